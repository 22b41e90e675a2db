"""Tests for `medr1_demo.policy.tiny`: tiny checkpoints look and load like real Qwen2-VL ones.

Run: `.venv/bin/python -m pytest tests/test_tiny.py -q`
"""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

from medr1_demo.policy.tiny import SPECIAL_TOKENS, build_tiny_checkpoint

CURRENT_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
    "chat_template.jinja",
}
LEGACY_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
    "chat_template.json",
}


def weights(folder) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def test_default_size_is_tiny(tmp_path):
    folder = build_tiny_checkpoint(tmp_path / "t")
    parameters = sum(t.numel() for t in weights(folder).values())
    assert 100_000 < parameters < 300_000


def test_current_layout_files(tiny_checkpoint):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert names >= CURRENT_FILES
    assert not names & {"preprocessor_config.json", "chat_template.json"}
    processor_config = json.loads((tiny_checkpoint / "processor_config.json").read_text())
    assert processor_config["processor_class"] == "Qwen2VLProcessor"
    assert {"image_processor", "video_processor"} <= processor_config.keys()


def test_legacy_layout_files(tiny_legacy_checkpoint):
    names = {p.name for p in tiny_legacy_checkpoint.iterdir()}
    assert names >= LEGACY_FILES
    assert not names & {"processor_config.json", "chat_template.jinja", "model.safetensors"}
    config = json.loads((tiny_legacy_checkpoint / "config.json").read_text())
    # transformers 4.4x wrote the text settings flat, with M-RoPE as rope_scaling.
    assert "text_config" not in config and config["rope_scaling"]["type"] == "mrope"


def test_layouts_hold_the_same_model(tiny_checkpoint, tiny_legacy_checkpoint):
    current, legacy = weights(tiny_checkpoint), weights(tiny_legacy_checkpoint)
    assert current.keys() == legacy.keys()
    assert all(torch.equal(current[name], legacy[name]) for name in current)
    a, b = (
        AutoConfig.from_pretrained(tiny_checkpoint),
        AutoConfig.from_pretrained(tiny_legacy_checkpoint),
    )
    assert a.text_config.hidden_size == b.text_config.hidden_size == 64
    assert (
        a.text_config.rope_parameters["mrope_section"]
        == b.text_config.rope_parameters["mrope_section"]
    )


@pytest.mark.parametrize("layout", ["current", "legacy"])
def test_special_tokens_have_the_config_ids(layout, tiny_checkpoint, tiny_legacy_checkpoint):
    folder = tiny_checkpoint if layout == "current" else tiny_legacy_checkpoint
    config = AutoConfig.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    assert ids["<|image_pad|>"] == config.image_token_id
    assert ids["<|video_pad|>"] == config.video_token_id
    assert ids["<|vision_start|>"] == config.vision_start_token_id
    assert ids["<|vision_end|>"] == config.vision_end_token_id
    assert tokenizer.eos_token_id == config.text_config.eos_token_id == ids["<|im_end|>"]
    assert tokenizer.pad_token_id == config.text_config.pad_token_id == ids["<|endoftext|>"]
    assert len(set(ids.values())) == len(SPECIAL_TOKENS)
    assert max(ids.values()) < config.text_config.vocab_size
    # A special token in text stays one token (the processor relies on this for image slots).
    assert tokenizer("x<|image_pad|>y")["input_ids"].count(config.image_token_id) == 1


@pytest.mark.parametrize(
    "text",
    [
        "What imaging technique is employed for obtaining this image? A)CT, B)MRI",
        "<think>The scan shows the liver.</think>\n<answer>C</answer>",
        "  leading spaces, tabs\tand\nnew lines  ",
        "Ünïcode: 肺 結節 — 5 mm ≥ 3 mm",  # bytes never seen in training
        "",
    ],
)
def test_tokenizer_round_trips_text(tiny_checkpoint, text):
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_chat_template_places_the_image_and_prompt(tiny_checkpoint):
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith(
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert text.startswith("<|im_start|>system\n")


def test_corpus_extra_teaches_whole_words(tmp_path):
    word = " pneumomediastinum"
    plain = build_tiny_checkpoint(tmp_path / "plain")
    taught = build_tiny_checkpoint(tmp_path / "taught", corpus_extra=[f"a{word} here"] * 20)
    count = {
        name: len(AutoTokenizer.from_pretrained(folder)(word)["input_ids"])
        for name, folder in (("plain", plain), ("taught", taught))
    }
    assert count["taught"] == 1 < count["plain"]


def test_sizes_seed_and_pixels_are_honoured(tmp_path):
    small = build_tiny_checkpoint(tmp_path / "a", seed=1)
    bigger = build_tiny_checkpoint(
        tmp_path / "b", seed=1, text_hidden=128, text_layers=3, max_pixels=28 * 28 * 64
    )
    again = build_tiny_checkpoint(tmp_path / "c", seed=1)
    other = build_tiny_checkpoint(tmp_path / "d", seed=2)
    size = {
        k: sum(t.numel() for t in weights(f).values()) for k, f in (("s", small), ("b", bigger))
    }
    assert size["b"] > 2 * size["s"]
    key = next(k for k in weights(small) if k.endswith("layers.0.mlp.up_proj.weight"))
    assert torch.equal(weights(small)[key], weights(again)[key])
    assert not torch.equal(weights(small)[key], weights(other)[key])
    assert AutoImageProcessor.from_pretrained(bigger).size["longest_edge"] == 28 * 28 * 64


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        build_tiny_checkpoint(tmp_path / "x", layout="newest")
