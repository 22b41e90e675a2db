"""Tiny Qwen2-VL checkpoints, built offline in about a second, laid out like real ones.

Tests, benchmarks and the bundled demo policy need a policy that loads through exactly the code
path the released Med-R1 checkpoints take (config, safetensors weights, tokenizer, chat template,
image processor settings) but is small enough for a CPU. `build_tiny_checkpoint` writes one:
a randomly initialised `Qwen2VLForConditionalGeneration`, a byte-level BPE tokenizer trained here
on Med-R1 prompt text (plus any `corpus_extra`), Qwen2-VL's special tokens with the ids the config
names, a Qwen2-VL style chat template and small min/max pixels.

Two folder layouts:

- "current": what transformers 5 `save_pretrained` writes (processor_config.json,
  chat_template.jinja, model.safetensors, nested text_config);
- "legacy": the layout of the released Med-R1 checkpoints (preprocessor_config.json,
  chat_template.json, vocab.json/merges.txt, sharded safetensors + index, flat config).

Run `python -m medr1_demo.policy.tiny OUT_DIR [--layout legacy]` to write one and print its size.
"""

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

from medr1_demo import protocol
from medr1_demo.protocol import LETTERS, MODES, PROMPT_TEMPLATES, QUESTION_TYPES, format_question

# Qwen2-VL's special tokens; the tiny tokenizer gives them ids 0..7 in this order.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
TOKEN_ID = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
LAYOUTS = ("current", "legacy")

# Qwen2-VL's chat template semantics (default system turn, image/video placeholders, generation
# prompt), written out for the tiny tokenizer; Med-R1 trained and evaluated through it.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Words of the Med-R1 world, so the tokenizer learns them whole.
MODALITIES = (*protocol.MODALITIES, "PET", "Mammogram", "Fluoroscopy", "Angiography")
FINDINGS = (
    "lung", "liver", "kidney", "brain", "heart", "spine", "breast", "retina", "skin", "bone",
    "abdomen", "chest", "pelvis", "knee", "normal", "tumor", "nodule", "fracture", "cyst",
    "pneumonia", "melanoma", "nevus", "glaucoma", "edema", "hemorrhage", "carcinoma",
    "COVID-19 infection", "left", "right", "upper", "lower", "lobe", "mild", "moderate", "severe",
)  # fmt: skip
QUESTIONS = (
    "What imaging technique is employed for obtaining this image?",
    "Which imaging modality is utilized to obtain this picture?",
    "Which organ is shown in this image?",
    "What is the specific condition depicted in this image?",
    "What is the grade of the lesion in this image?",
    "What abnormality is visible in this scan?",
)


def corpus(extra: list[str] | None = None, *, seed: int = 0) -> list[str]:
    """The texts the tokenizer is trained on: Med-R1 prompts, answers, modality words, `extra`."""
    rng = random.Random(seed)
    vocabulary = list(MODALITIES) + list(FINDINGS)
    texts = ["You are a helpful assistant.", "system\nuser\nassistant\n", *QUESTION_TYPES]
    for index in range(200):
        n_options = 2 + index % 4
        options = rng.sample(vocabulary, n_options)
        question = format_question(QUESTIONS[index % len(QUESTIONS)], options)
        texts.append(PROMPT_TEMPLATES[MODES[index % 2]].format(Question=question))
        letter = LETTERS[index % n_options]
        reason = f"The image shows the {options[index % n_options]}, so the answer is {letter}."
        texts.append(f"<think>{reason}</think>\n<answer>{letter}</answer>")
        texts.append(f"<answer> {letter} </answer>")
    return texts + list(extra or [])


def build_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE `Qwen2Tokenizer` trained on `texts`, special tokens at ids 0..7."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # The same normalizer / pre-tokenizer / decoder Qwen2's tokenizer uses, so a reload through
    # Qwen2Tokenizer splits text exactly as training did.
    raw = Tokenizer(models.BPE())
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer=trainer)
    state = json.loads(raw.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=[tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=32768,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    if ids != list(range(len(SPECIAL_TOKENS))):  # the config below relies on these ids
        raise RuntimeError(f"special tokens got ids {ids}")
    return tokenizer


def build_config(vocab_size: int, **sizes):  # sizes: build_tiny_checkpoint's size arguments
    """A Qwen2VLConfig with the tiny sizes and the tiny tokenizer's special-token ids."""
    from transformers import Qwen2VLConfig

    head_dim = sizes["text_hidden"] // sizes["heads"]
    # M-RoPE splits head_dim/2 frequencies over (time, height, width) as Qwen2-VL does (16, 24, 24).
    half = head_dim // 2
    temporal = half // 4 or 1
    mrope = [temporal, (half - temporal) // 2, half - temporal - (half - temporal) // 2]
    return Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": sizes["text_hidden"],
            "intermediate_size": sizes["intermediate"],
            "num_hidden_layers": sizes["text_layers"],
            "num_attention_heads": sizes["heads"],
            "num_key_value_heads": sizes["kv_heads"],
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
            "bos_token_id": TOKEN_ID["<|endoftext|>"],
            "eos_token_id": TOKEN_ID["<|im_end|>"],
            "pad_token_id": TOKEN_ID["<|endoftext|>"],
            "tie_word_embeddings": True,
            "initializer_range": sizes["init_std"],
        },
        vision_config={
            "depth": sizes["vision_depth"],
            "embed_dim": sizes["vision_embed"],
            "hidden_size": sizes["text_hidden"],
            "num_heads": sizes["vision_heads"],
            "patch_size": sizes["patch_size"],
            "spatial_merge_size": sizes["spatial_merge"],
            "temporal_patch_size": 2,
            "initializer_range": sizes["init_std"],
        },
        image_token_id=TOKEN_ID["<|image_pad|>"],
        video_token_id=TOKEN_ID["<|video_pad|>"],
        vision_start_token_id=TOKEN_ID["<|vision_start|>"],
        vision_end_token_id=TOKEN_ID["<|vision_end|>"],
        bos_token_id=TOKEN_ID["<|endoftext|>"],
        eos_token_id=TOKEN_ID["<|im_end|>"],
        pad_token_id=TOKEN_ID["<|endoftext|>"],
        tie_word_embeddings=True,
        architectures=["Qwen2VLForConditionalGeneration"],
    )


def image_processor_settings(patch_size: int, merge: int, min_pixels: int, max_pixels: int):
    """Qwen2VLImageProcessor settings as its config file stores them (CLIP mean/std)."""
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
        "resample": 3,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        "patch_size": patch_size,
        "temporal_patch_size": 2,
        "merge_size": merge,
    }


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _flatten_config(config: dict) -> dict:
    """transformers 4.4x's Qwen2-VL config.json: text settings at the top level, mrope scaling."""
    text = config.pop("text_config")
    rope = text.pop("rope_parameters")
    for key in ("model_type", "dtype", "architectures", "output_hidden_states", "return_dict"):
        text.pop(key, None)
    config.update(text)
    config["rope_theta"] = rope["rope_theta"]
    config["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
    config["torch_dtype"] = config.pop("dtype", None) or "float32"
    config["transformers_version"] = "4.49.0"
    return config


def build_tiny_checkpoint(
    out_dir,
    *,
    seed: int = 0,
    layout: str = "current",
    text_hidden: int = 64,
    text_layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vision_depth: int = 2,
    vision_embed: int = 32,
    vision_heads: int = 2,
    patch_size: int = 14,
    spatial_merge: int = 2,
    min_pixels: int = 28 * 28 * 4,
    max_pixels: int = 28 * 28 * 16,
    corpus_extra: list[str] | None = None,
    vocab_size: int = 1024,
    init_std: float = 0.02,
    dtype: str = "float32",
) -> Path:
    """Write a randomly initialised Qwen2-VL checkpoint to `out_dir` (created) and return it.

    `vocab_size` is the BPE target; the tokenizer may stop below it when the corpus runs out of
    merges, and the model's embedding is rounded up to a multiple of 64 as Qwen2-VL's is.
    `init_std` is the weights' initial spread; a larger one (e.g. 0.3) makes an untrained model's
    output depend visibly on its input, which tests of the data path need. `dtype` is what the
    weights are stored in ("bfloat16" as the released 2B checkpoints).
    """
    import torch
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus(corpus_extra, seed=seed), vocab_size)
    model_vocab = -(-len(tokenizer) // 64) * 64
    config = build_config(
        model_vocab,
        text_hidden=text_hidden,
        text_layers=text_layers,
        heads=heads,
        kv_heads=kv_heads,
        intermediate=intermediate,
        vision_depth=vision_depth,
        vision_embed=vision_embed,
        vision_heads=vision_heads,
        patch_size=patch_size,
        spatial_merge=spatial_merge,
        init_std=init_std,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval().to(getattr(torch, dtype))
    model.generation_config = GenerationConfig(
        bos_token_id=TOKEN_ID["<|endoftext|>"],
        eos_token_id=[TOKEN_ID["<|im_end|>"], TOKEN_ID["<|endoftext|>"]],
        pad_token_id=TOKEN_ID["<|endoftext|>"],
    )
    image_settings = image_processor_settings(patch_size, spatial_merge, min_pixels, max_pixels)
    if layout == "current":
        _save_current(out, model, tokenizer, image_settings)
    else:
        _save_legacy(out, model, tokenizer, image_settings)
    return out


def _save_current(out: Path, model, tokenizer, image_settings: dict) -> None:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # What a stock Qwen2VLProcessor.save_pretrained writes (it cannot be built without
    # torchvision): one processor_config.json holding both sub-processors, the template as jinja.
    video = dict(image_settings, video_processor_type="Qwen2VLVideoProcessor")
    del video["image_processor_type"]
    _write_json(
        out / "processor_config.json",
        {
            "image_processor": image_settings,
            "video_processor": video,
            "processor_class": "Qwen2VLProcessor",
        },
    )
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config.pop("chat_template", None)
    tokenizer_config["processor_class"] = "Qwen2VLProcessor"
    _write_json(out / "tokenizer_config.json", tokenizer_config)


def _save_legacy(out: Path, model, tokenizer, image_settings: dict) -> None:
    # Sharded weights with an index, as the released 2B checkpoints ship them.
    model.save_pretrained(out, max_shard_size="400KB")
    _write_json(out / "config.json", _flatten_config(json.loads((out / "config.json").read_text())))
    tokenizer.save_pretrained(out)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    for key in ("backend", "extra_special_tokens"):  # transformers 5 keys
        tokenizer_config.pop(key, None)
    tokenizer_config.update(
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        processor_class="Qwen2VLProcessor",
        tokenizer_class="Qwen2Tokenizer",
        chat_template=CHAT_TEMPLATE,
        added_tokens_decoder={
            str(TOKEN_ID[t]): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                               "normalized": False, "single_word": False}
            for t in SPECIAL_TOKENS
        },
    )  # fmt: skip
    _write_json(out / "tokenizer_config.json", tokenizer_config)
    model_state = json.loads((out / "tokenizer.json").read_text())["model"]
    _write_json(out / "vocab.json", model_state["vocab"])
    merges = [" ".join(m) if isinstance(m, list) else m for m in model_state["merges"]]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    _write_json(
        out / "special_tokens_map.json",
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
         "additional_special_tokens": list(SPECIAL_TOKENS[1:])},
    )  # fmt: skip
    legacy_image = {k: v for k, v in image_settings.items() if k != "size"}
    _write_json(
        out / "preprocessor_config.json", dict(legacy_image, processor_class="Qwen2VLProcessor")
    )
    _write_json(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    for name in ("processor_config.json", "chat_template.jinja"):
        (out / name).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--layout", choices=LAYOUTS, default="current")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    if out.exists() and any(out.iterdir()):
        if not args.force:
            print(f"{out} is not empty; pass --force to replace it.", file=sys.stderr)
            return 1
        shutil.rmtree(out)
    build_tiny_checkpoint(out, seed=args.seed, layout=args.layout)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.2f} MB): {', '.join(sorted(f.name for f in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
