"""Tests for `medr1_demo.policy.engine` and `medr1_demo.policy.checkpoint` on real tiny Qwen2-VL checkpoints.

Run: `.venv/bin/python -m pytest tests/test_engine.py -q` (CPU, offline, about half a minute).
"""

import dataclasses
import json
import shutil
import threading

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

from medr1_demo.config import DecodingConfig
from medr1_demo.policy.checkpoint import PolicyLoadError, load_processor, processor_kind
from medr1_demo.policy.engine import GenerationError, PolicyEngine
from medr1_demo.policy.tiny import build_tiny_checkpoint
from medr1_demo.protocol import NO_THINKING, THINKING, QuestionError, build_prompt, format_question

QUESTION, OPTIONS = "Which organ is shown?", ["Liver", "Kidney", "Spleen, upper pole"]
SHORT = DecodingConfig(max_new_tokens_thinking=24, max_new_tokens_no_thinking=8)


def picture(seed: int, size=(160, 120)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def timeless(answers: dict) -> dict:
    """Answers without wall times, which differ between runs of the same generation."""
    return {mode: dataclasses.replace(answer, seconds=0.0) for mode, answer in answers.items()}


@pytest.fixture(scope="module")
def lively_checkpoint(tmp_path_factory):
    # A wider initial spread makes the untrained model's output depend on image and question.
    return build_tiny_checkpoint(tmp_path_factory.mktemp("lively") / "policy", seed=3, init_std=0.2)


@pytest.fixture(scope="module")
def engine(lively_checkpoint):
    return PolicyEngine.load(str(lively_checkpoint))


def next_token_logits(engine: PolicyEngine, image: Image.Image) -> torch.Tensor:
    prompt = build_prompt(format_question(QUESTION, OPTIONS), THINKING)
    with torch.inference_mode():
        return engine.model(**engine.model_inputs([image], [prompt])).logits[0, -1]


def test_info_describes_the_loaded_policy(engine, lively_checkpoint):
    info = engine.info
    assert info.model_id == str(lively_checkpoint) and info.subfolder is None
    assert (info.device, info.dtype, info.processor) == ("cpu", "float32", "image-only")
    assert info.parameters == sum(p.numel() for p in engine.model.parameters()) > 100_000
    assert engine.processor.tokenizer.padding_side == "left"


def test_both_modes_come_from_one_generate_call(engine, monkeypatch):
    calls, generate = [], engine.model.generate

    def counted(*args, **kwargs):
        output = generate(*args, **kwargs)
        calls.append((kwargs["input_ids"].shape, output.shape))
        return output

    monkeypatch.setattr(engine.model, "generate", counted)
    settings = dataclasses.replace(SHORT, exact_length=True)
    answers = engine.answer(picture(0), QUESTION, OPTIONS, settings=settings, checks={})
    assert len(calls) == 1
    (inputs, output) = calls[0]
    assert inputs[0] == 2  # one row per mode
    assert output[1] - inputs[1] == 24  # the batch ran as long as its longest row, no longer
    assert answers[THINKING].tokens == 24 and answers[NO_THINKING].tokens == 8
    for mode, answer in answers.items():
        assert answer.mode == mode and answer.done and answer.raw and answer.seconds > 0
    assert answers[NO_THINKING].seconds <= answers[THINKING].seconds
    # The default checks add their controls to the same call: two no-thinking rows more.
    engine.answer(picture(0), QUESTION, OPTIONS, settings=settings)
    assert len(calls) == 2 and calls[1][0][0] == 4


def test_answer_reads_letters_through_the_protocol(engine):
    answers = engine.answer(picture(1), QUESTION, OPTIONS, settings=SHORT)
    for answer in answers.values():
        # An untrained model rarely gives a valid letter; either way the fields must agree.
        if answer.letter is None:
            assert answer.problem and answer.option_text is None
        else:
            assert answer.option_text == OPTIONS["ABC".index(answer.letter)]
    only = engine.answer(picture(1), QUESTION, OPTIONS, modes=(NO_THINKING,), settings=SHORT)
    assert list(only) == [NO_THINKING]


def test_stream_grows_and_ends_equal_to_answer(engine):
    expected = engine.answer(picture(2), QUESTION, OPTIONS, settings=SHORT)
    partials = list(engine.stream(picture(2), QUESTION, OPTIONS, settings=SHORT))
    assert len(partials) >= 5
    assert timeless(partials[-1]) == timeless(expected)
    for mode in (THINKING, NO_THINKING):
        tokens = [p[mode].tokens for p in partials]
        assert tokens == sorted(tokens) and tokens[0] < tokens[-1]
        assert all(expected[mode].raw.startswith(p[mode].raw) for p in partials)
        # A mode is marked done once its row stopped, and stays done.
        done = [p[mode].done for p in partials]
        assert done == sorted(done) and done[-1]
    assert not partials[0][THINKING].done


def test_stream_closed_early_releases_the_engine(engine):
    stream = engine.stream(picture(3), QUESTION, OPTIONS)
    next(stream)
    stream.close()  # the consumer leaves after one update
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(engine.answer(picture(3), QUESTION, OPTIONS, settings=SHORT))
    )
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive() and set(result) == {THINKING, NO_THINKING}


def test_sampling_follows_the_seed(engine):
    settings = dataclasses.replace(SHORT, do_sample=True, temperature=1.0, seed=7)
    first = engine.answer(picture(4), QUESTION, OPTIONS, settings=settings)
    again = engine.answer(picture(4), QUESTION, OPTIONS, settings=settings)
    other = engine.answer(
        picture(4), QUESTION, OPTIONS, settings=dataclasses.replace(settings, seed=8)
    )
    greedy = engine.answer(picture(4), QUESTION, OPTIONS, settings=SHORT)
    assert timeless(first) == timeless(again)
    assert first[THINKING].raw != other[THINKING].raw or first[THINKING].raw != greedy[THINKING].raw


def test_complete_batches_rows_with_their_own_limits(engine):
    prompts = [build_prompt(format_question(QUESTION, OPTIONS), m) for m in (THINKING, NO_THINKING)]
    settings = DecodingConfig(exact_length=True)
    rows = engine.complete(
        [picture(5), picture(6)], prompts, max_new_tokens=[6, 3], settings=settings
    )
    assert [tokens for _, tokens in rows] == [6, 3]
    assert all(isinstance(text, str) for text, _ in rows)
    with pytest.raises(ValueError):
        engine.complete([picture(5)], prompts[:1], max_new_tokens=[4, 4])


def test_the_image_reaches_the_model(engine):
    first, same, other = (next_token_logits(engine, picture(s)) for s in (10, 10, 11))
    assert torch.equal(first, same)
    assert not torch.allclose(first, other)


def test_images_are_converted_to_rgb(engine):
    gray = picture(12).convert("L")
    answers = engine.answer(gray, QUESTION, OPTIONS, settings=SHORT)
    assert timeless(answers) == timeless(
        engine.answer(gray.convert("RGB"), QUESTION, OPTIONS, settings=SHORT)
    )


def test_concurrent_calls_match_sequential_ones(engine):
    cases = [(picture(20 + i), f"{QUESTION} Case {i}", OPTIONS[: 2 + i % 2]) for i in range(4)]
    sequential = [timeless(engine.answer(img, q, opts, settings=SHORT)) for img, q, opts in cases]
    results = [None] * 4

    def ask(index):
        image, question, options = cases[index]
        results[index] = timeless(engine.answer(image, question, options, settings=SHORT))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == sequential
    assert len({r[THINKING].raw for r in results}) > 1  # the cases really differ


def test_question_errors_propagate_unchanged(engine):
    with pytest.raises(QuestionError, match="2 to 8"):
        engine.answer(picture(0), QUESTION, ["Only one"])
    with pytest.raises(QuestionError, match="empty"):
        next(engine.stream(picture(0), "  ", OPTIONS))


def test_unusable_image_raises_generation_error(engine):
    with pytest.raises(GenerationError, match="image could not be prepared"):
        engine.answer(Image.new("RGB", (600, 2)), QUESTION, OPTIONS, settings=SHORT)
    with pytest.raises(GenerationError, match="image could not be prepared"):
        list(engine.stream(Image.new("RGB", (2, 600)), QUESTION, OPTIONS, settings=SHORT))


def test_legacy_layout_loads_the_same_model(tiny_checkpoint, tiny_legacy_checkpoint):
    current = PolicyEngine.load(str(tiny_checkpoint))
    legacy = PolicyEngine.load(str(tiny_legacy_checkpoint))
    assert legacy.processor.chat_template == current.processor.chat_template
    assert torch.equal(
        next_token_logits(current, picture(30)), next_token_logits(legacy, picture(30))
    )


def test_subfolder_layout_loads(tiny_checkpoint, tmp_path):
    shutil.copytree(tiny_checkpoint, tmp_path / "Med-R1" / "VQA_CT")
    engine = PolicyEngine.load(str(tmp_path / "Med-R1"), subfolder="VQA_CT")
    assert engine.info.subfolder == "VQA_CT"
    assert set(engine.answer(picture(0), QUESTION, OPTIONS, settings=SHORT)) == {
        THINKING,
        NO_THINKING,
    }
    with pytest.raises(PolicyLoadError, match="No sub-folder 'VQA_MRI'.*VQA_CT"):
        PolicyEngine.load(str(tmp_path / "Med-R1"), subfolder="VQA_MRI")
    with pytest.raises(PolicyLoadError, match="has no config.json. Sub-folders found: VQA_CT"):
        PolicyEngine.load(str(tmp_path / "Med-R1"))


def test_metadata_reaches_the_info(tiny_checkpoint, tmp_path):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "policy")
    metadata = {"mode": "no-thinking", "base_model": "tiny", "description": "a test policy"}
    (folder / "medr1_policy.json").write_text(json.dumps(metadata))
    info = PolicyEngine.load(str(folder)).info
    assert (info.trained_mode, info.base_model, info.description) == (
        "no-thinking",
        "tiny",
        "a test policy",
    )


@pytest.fixture(scope="module")
def lora_adapter(lively_checkpoint, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(lively_checkpoint)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(base, config)
    torch.manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero; give it weight so the adapter changes outputs
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("adapter") / "lora"
    model.save_pretrained(folder)
    return folder


def test_lora_adapter_changes_the_model(engine, lively_checkpoint, lora_adapter):
    adapted = PolicyEngine.load(str(lively_checkpoint), adapter=str(lora_adapter))
    assert adapted.info.adapter == str(lora_adapter)
    assert not any("lora" in name for name, _ in adapted.model.named_parameters())  # merged
    image = picture(40)
    assert not torch.allclose(next_token_logits(adapted, image), next_token_logits(engine, image))
    # The base model is found from the adapter's own config when no model is given.
    alone = PolicyEngine.load(None, adapter=str(lora_adapter))
    assert alone.info.base_model == str(lively_checkpoint)
    assert torch.equal(next_token_logits(alone, image), next_token_logits(adapted, image))


def test_missing_folder_is_a_plain_load_error(tmp_path):
    with pytest.raises(
        PolicyLoadError, match=r"No model at .*missing: the folder does not exist\."
    ):
        PolicyEngine.load(str(tmp_path / "missing"))


def test_hub_failure_is_a_plain_load_error(monkeypatch, tmp_path):
    # Offline mode and an empty cache: the hub is asked nothing over the network.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(PolicyLoadError, match="Could not fetch 'owner/no-such-policy'"):
        PolicyEngine.load("owner/no-such-policy", subfolder="VQA_CT")


def test_quantization_needs_cuda(tiny_checkpoint):
    with pytest.raises(PolicyLoadError, match="4bit loading needs a CUDA GPU"):
        PolicyEngine.load(str(tiny_checkpoint), quantization="4bit", device="cpu")
    with pytest.raises(PolicyLoadError, match="Unknown quantization"):
        PolicyEngine.load(str(tiny_checkpoint), quantization="3bit")


def test_image_only_processor_round_trips_through_save(tiny_checkpoint, tmp_path):
    processor = load_processor(tiny_checkpoint)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    # Saved under the stock class name, with a video entry, so torchvision hosts load it stock.
    assert saved["processor_class"] == "Qwen2VLProcessor" and "video_processor" in saved
    again = load_processor(tmp_path)
    assert processor_kind(again) == "image-only"
    batch = again(
        text=["<|vision_start|><|image_pad|><|vision_end|>hi"],
        images=[picture(0)],
        return_tensors="pt",
    )
    assert (
        batch["image_grid_thw"].tolist()
        == processor(
            text=["<|vision_start|><|image_pad|><|vision_end|>hi"],
            images=[picture(0)],
            return_tensors="pt",
        )["image_grid_thw"].tolist()
    )
