"""The policy a training run starts from: its folder, processor, load settings, LoRA and 4/8-bit.

Shared by `trainer.train.grpo` and `trainer.train.sft`. The model itself is loaded by TRL's trainers from the
folder (so GRPO's reference model is loaded the same way); this module says how: the processor
comes from `medr1_demo.policy.checkpoint.load_processor` (stock, or image-only without torchvision), the
pixel budget from the recipe, and the `from_pretrained` keyword arguments from `ModelConfig`.

Full fine-tuning keeps float32 master weights (`dtype: float32`, also when a recipe says `auto`
or nothing) and computes in bf16 under autocast when `bf16: true`, as Med-R1 trained. Weights of
Qwen2-VL are ~0.02 in size, where bfloat16's spacing is ~1e-4: a 1e-6 Adam step rounds away for
almost every weight stored in bf16. LoRA and QLoRA keep their base in the recipe's dtype (the
base is frozen; PEFT keeps the adapter in float32).
"""

import sys
from pathlib import Path

from medr1_demo.policy.checkpoint import load_processor, resolve_source


def policy_folder(model_args) -> Path:
    """A local folder for `model_name_or_path` (hub ids are fetched once into the cache)."""
    if not model_args.model_name_or_path:
        raise ValueError(
            "no model: set model_name_or_path in the recipe or pass --model_name_or_path"
        )
    return resolve_source(model_args.model_name_or_path)


def set_pixel_budget(processor, min_pixels: int | None, max_pixels: int | None) -> None:
    """Bound the pixels per image as Qwen2-VL's `min_pixels` / `max_pixels` (Med-R1: 401408)."""
    image_processor = processor.image_processor
    size = image_processor.size
    for edge, value in (("shortest_edge", min_pixels), ("longest_edge", max_pixels)):
        if value is None:
            continue
        if isinstance(size, dict):
            size[edge] = value
        else:
            setattr(size, edge, value)
    # older processors also keep the budget as plain attributes
    if min_pixels is not None and getattr(image_processor, "min_pixels", None) is not None:
        image_processor.min_pixels = min_pixels
    if max_pixels is not None and getattr(image_processor, "max_pixels", None) is not None:
        image_processor.max_pixels = max_pixels


def policy_processor(folder: Path, script_args):
    processor = load_processor(folder)
    set_pixel_budget(processor, script_args.min_pixels, script_args.max_pixels)
    return processor


def quantization_config(model_args):
    """bitsandbytes settings for QLoRA (4-bit) or 8-bit; the vision tower stays unquantized."""
    from trl import get_quantization_config

    config = get_quantization_config(model_args)
    if config is not None:
        # Quantizing the small vision tower saves little memory and hurts image reading.
        config.llm_int8_skip_modules = ["visual", "lm_head"]
    return config


def full_fine_tuning(model_args) -> bool:
    """Every weight trains: no adapter, no quantized base."""
    return not (model_args.use_peft or model_args.load_in_4bit or model_args.load_in_8bit)


def model_init_kwargs(model_args, training_args) -> dict:
    """`from_pretrained` keyword arguments for the policy (and GRPO's reference model)."""
    kwargs = dict(training_args.model_init_kwargs or {})
    kwargs.setdefault("dtype", model_args.dtype)
    if full_fine_tuning(model_args):
        if kwargs["dtype"] in (None, "auto"):  # "auto" would load the checkpoint's bf16
            kwargs["dtype"] = "float32"
        elif str(kwargs["dtype"]).removeprefix("torch.") in ("bfloat16", "float16"):
            print(
                f"warning: full fine-tuning with {kwargs['dtype']} master weights: small steps "
                "(Med-R1's 1e-6) round away for most weights. Use dtype: float32 with bf16: true.",
                file=sys.stderr,
            )
    if model_args.attn_implementation:
        kwargs.setdefault("attn_implementation", model_args.attn_implementation)
    if model_args.load_in_4bit or model_args.load_in_8bit:
        from accelerate import PartialState

        # one whole copy per process: a quantized model cannot be sharded by `device_map="auto"`
        kwargs.setdefault("device_map", {"": PartialState().local_process_index})
    return kwargs


def precision(model_args, training_args) -> str:
    """The run's precision in words, e.g. 'float32 master weights, bf16 compute (autocast)'.

    Reads the dtype `start_run` resolved into `training_args.model_init_kwargs`.
    """
    dtype = str((training_args.model_init_kwargs or {}).get("dtype")).removeprefix("torch.")
    if full_fine_tuning(model_args):
        weights = f"{dtype} master weights"
    elif model_args.load_in_4bit or model_args.load_in_8bit:
        weights = f"{4 if model_args.load_in_4bit else 8}-bit frozen base + LoRA adapter"
    else:
        weights = f"{dtype} frozen base + LoRA adapter"
    compute = next((m for m in ("bf16", "fp16") if getattr(training_args, m, False)), None)
    return f"{weights}, " + (f"{compute} compute (autocast)" if compute else "no mixed precision")


def peft_config(model_args):
    from trl import get_peft_config

    return get_peft_config(model_args)


def resume_target(training_args) -> str | bool | None:
    """`--resume_from_checkpoint true` means the latest checkpoint in output_dir; a path is kept."""
    from transformers.trainer_utils import get_last_checkpoint

    value = training_args.resume_from_checkpoint
    if value in (None, "", False) or str(value).lower() in ("false", "no", "none"):
        return None
    if value is True or str(value).lower() in ("true", "yes", "latest"):
        folder = Path(training_args.output_dir)
        last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        if last is None:
            raise ValueError(f"nothing to resume: no checkpoint-* folder in {folder}")
        return last
    if not Path(value).is_dir():
        raise ValueError(f"nothing to resume: {value} is not a checkpoint folder")
    return str(value)
