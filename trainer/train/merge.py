"""`python -m trainer merge`: fold a LoRA adapter into full weights the app serves without PEFT.

    python -m trainer merge --adapter runs/qwen2-vl-2b-grpo-lora --out runs/qwen2-vl-2b-grpo-merged

The base model is the one the adapter names (adapter_config.json), else the `base_model` of its
`medr1_policy.json`, unless `--base` says otherwise. The output holds safetensors weights, the
processor (tokenizer, chat template) and `medr1_policy.json` carried over from the adapter with
`adapter: false` and `merged_from`. Merging happens on the CPU by default (`--device cuda` to use a
GPU); the weights are saved in `--dtype` (default: the base checkpoint's own dtype).
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from medr1_demo.policy.checkpoint import (
    ADAPTER_CONFIG,
    PolicyLoadError,
    adapter_base,
    load_model,
    load_processor,
    read_policy_metadata,
    resolve_source,
)
from trainer.train.outputs import CURVES_NAME, write_metadata


def base_folder(adapter: Path, base: str | None) -> Path:
    """Where the base weights are: --base, the adapter's own record, or the run's metadata."""
    candidates = (
        [base] if base else [adapter_base(adapter), read_policy_metadata(adapter).get("base_model")]
    )
    errors = []
    for candidate in filter(None, candidates):
        try:
            return resolve_source(candidate)
        except PolicyLoadError as err:
            errors.append(str(err))
    detail = " ".join(errors) or "the adapter names no base model."
    raise PolicyLoadError(f"Cannot find the base model for {adapter}: {detail} Pass --base.")


def base_dtype(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "auto"
    text = config.get("text_config") or {}
    return config.get("dtype") or config.get("torch_dtype") or text.get("dtype") or "auto"


def merge(
    adapter, out, *, base: str | None = None, dtype: str | None = None, device: str = "cpu"
) -> Path:
    """Write the merged checkpoint to `out` and return it."""
    adapter, out = Path(adapter), Path(out)
    if not (adapter / ADAPTER_CONFIG).exists():
        raise PolicyLoadError(f"No LoRA adapter at {adapter}: the folder has no {ADAPTER_CONFIG}.")
    if out.resolve() == adapter.resolve():
        raise PolicyLoadError("--out must differ from --adapter.")
    folder = base_folder(adapter, base)
    model = load_model(folder, device=device, dtype=dtype or base_dtype(folder), adapter=adapter)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # safetensors
    # the processor trained with (pixel budget included) travels with the adapter
    processor_source = adapter if (adapter / "tokenizer_config.json").exists() else folder
    load_processor(processor_source).save_pretrained(out)
    metadata = read_policy_metadata(adapter)
    metadata.update(
        adapter=False,
        merged_from=str(adapter),
        base_model=metadata.get("base_model") or str(folder),
    )
    write_metadata(out, metadata)
    for suffix in (".png", ".csv"):
        curves = adapter / f"{CURVES_NAME}{suffix}"
        if curves.exists():
            shutil.copy2(curves, out / curves.name)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer merge", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--adapter", required=True, help="the LoRA adapter folder a run saved")
    parser.add_argument("--out", required=True, help="folder for the merged checkpoint")
    parser.add_argument("--base", help="base model folder or hub id (default: the adapter's)")
    parser.add_argument("--dtype", help="float32, bfloat16 or float16 (default: the base's)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args(argv)
    try:
        out = merge(args.adapter, args.out, base=args.base, dtype=args.dtype, device=args.device)
    except PolicyLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"merged {args.adapter} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
