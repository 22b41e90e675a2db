"""What a training run leaves behind: a servable checkpoint, `medr1_policy.json`, training curves.

The checkpoint folder is what `medr1_demo.policy.engine.PolicyEngine.load` and the app read as it is:
safetensors weights (or a LoRA adapter), the processor, tokenizer and chat template, and
`medr1_policy.json`, which says what was trained (mode, base model, data files and counts, recipe
and resolved settings, final metrics, a description). `PolicyMetadataCallback` writes the same
file into every intermediate `checkpoint-N` so any save can be served or evaluated.

Curves (`training_curves.png` + `.csv`) come from `trainer.state.log_history`: reward, accuracy
reward, format reward, completion length and KL for GRPO; loss (and token accuracy) for SFT.
"""

import csv
import dataclasses
import enum
import json
import time
from pathlib import Path

from transformers import TrainerCallback

from medr1_demo.policy.checkpoint import METADATA_FILE

CURVES_NAME = "training_curves"
# (panel title, how to find its series among the logged keys)
PANELS = (
    ("reward (sum)", lambda k: k == "reward"),
    ("accuracy reward", lambda k: k.startswith("rewards/accuracy") and k.endswith("/mean")),
    ("format reward", lambda k: k.startswith("rewards/format") and k.endswith("/mean")),
    ("completion length (tokens)", lambda k: k == "completions/mean_length"),
    ("KL to reference", lambda k: k == "kl"),
    ("loss", lambda k: k == "loss"),
    ("token accuracy", lambda k: k == "mean_token_accuracy"),
)
_SECRET_HINTS = ("token", "password", "secret")


def _plain(value):
    """JSON-safe form of a config value."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def changed_settings(config) -> dict:
    """The fields of a dataclass config that differ from their defaults (secrets left out)."""
    changed = {}
    for field in dataclasses.fields(config):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        value = getattr(config, field.name, None)
        if isinstance(value, str) and any(hint in field.name for hint in _SECRET_HINTS):
            continue  # hub tokens and the like never reach a file
        if _plain(value) != _plain(default):
            changed[field.name] = _plain(value)
    return changed


def policy_metadata(
    *,
    method: str,
    script_args,
    training_args,
    model_args,
    data,
    recipe: str | None,
    metrics: dict | None = None,
    adapter: bool = False,
    batch: dict | None = None,
    precision: str | None = None,
) -> dict:
    """The content of `medr1_policy.json` for this run."""
    return {
        "format": 1,
        "method": method,
        "mode": script_args.mode,  # the key the engine reads
        "base_model": model_args.model_name_or_path,
        "adapter": adapter,
        "description": script_args.description
        or f"{method.upper()} ({script_args.mode}) on {', '.join(Path(f).name for f in data.files)}",
        "data": {
            "files": data.files,
            "eval_files": data.eval_files,
            "image_root": script_args.image_root,
            **data.summary(),
        },
        "recipe": recipe,
        "global_batch": batch,  # prompts/completions per optimizer step (trainer.train.batch)
        "precision": precision,
        "settings": {
            "script": _plain(dataclasses.asdict(script_args)),
            "training": changed_settings(training_args),
            "model": changed_settings(model_args),
        },
        "metrics": metrics or {},
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_metadata(folder, metadata: dict) -> Path:
    path = Path(folder) / METADATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


class PolicyMetadataCallback(TrainerCallback):
    """Writes `medr1_policy.json` (metrics so far) into each `checkpoint-N` as it is saved."""

    def __init__(self, metadata: dict):
        self.metadata = metadata

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                metrics = dict(last_values(state.log_history), global_step=state.global_step)
                write_metadata(folder, dict(self.metadata, metrics=metrics))
        return control


def last_values(log_history: list[dict]) -> dict:
    """The last logged value of each numeric key (the run's final metrics)."""
    final = {}
    for entry in log_history:
        for key, value in entry.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                final[key] = value
    return final


def curve_rows(log_history: list[dict]) -> tuple[list[str], list[dict]]:
    """Per-step rows of every numeric key logged during training (not the end-of-run summary)."""
    rows = [e for e in log_history if "step" in e and "train_runtime" not in e]
    keys = sorted(
        {k for e in rows for k, v in e.items() if isinstance(v, (int, float)) and k != "step"}
    )
    return ["step", *keys], rows


def write_curves(log_history: list[dict], folder) -> tuple[Path, Path | None]:
    """training_curves.csv (all logged series) and .png (the panels that were logged)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    columns, rows = curve_rows(log_history)
    csv_path = folder / f"{CURVES_NAME}.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    panels = []
    for title, wanted in PANELS:
        key = next((k for k in columns if wanted(k)), None)
        points = [(r["step"], r[key]) for r in rows if key and r.get(key) is not None]
        if points:
            panels.append((title, key, points))
    if not panels:
        return csv_path, None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    columns_n = min(3, len(panels))
    rows_n = -(-len(panels) // columns_n)
    figure, axes = plt.subplots(
        rows_n, columns_n, figsize=(4 * columns_n, 2.8 * rows_n), squeeze=False
    )
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, (title, key, points) in zip(axes.flat, panels, strict=False):
        steps, values = zip(*points, strict=True)
        axis.plot(steps, values, marker="o" if len(points) < 30 else None, linewidth=1.2)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        axis.annotate(key, (0.02, 0.02), xycoords="axes fraction", fontsize=6, color="gray")
    figure.tight_layout()
    png_path = folder / f"{CURVES_NAME}.png"
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    return csv_path, png_path


def start_run(
    method: str, script_args, training_args, model_args, data, recipe, callbacks=None
) -> tuple[object, dict, dict]:
    """What SFT and GRPO set up alike: (processor, metadata, the TRL trainer's shared arguments).

    The arguments: the policy folder as `model` (TRL loads it with `model_init_kwargs`), the
    training config, the processor, LoRA and quantization settings, and the callback that writes
    `medr1_policy.json` into every save. Prints the global batch and the precision first.
    """
    from trainer.train.batch import step_batch
    from trainer.train.policy import (
        model_init_kwargs,
        peft_config,
        policy_folder,
        policy_processor,
        precision,
        quantization_config,
    )

    folder = policy_folder(model_args)
    processor = policy_processor(folder, script_args)
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    batch = step_batch(training_args, getattr(training_args, "num_generations", 1))
    words = precision(model_args, training_args)
    if training_args.process_index == 0:
        print(f"{method}: global batch {batch.describe()}", flush=True)
        print(f"{method}: precision {words}", flush=True)
    lora = peft_config(model_args)
    metadata = policy_metadata(
        method=method,
        script_args=script_args,
        training_args=training_args,
        model_args=model_args,
        data=data,
        recipe=recipe,
        adapter=lora is not None,
        batch=batch.as_dict(),
        precision=words,
    )
    shared = {
        "model": str(folder),
        "args": training_args,
        "processing_class": processor,
        "peft_config": lora,
        "quantization_config": quantization_config(model_args),
        "callbacks": [PolicyMetadataCallback(metadata), *(callbacks or [])],
    }
    return processor, metadata, shared


def finish_run(trainer, processor, metadata: dict, train_metrics: dict, plots: bool = True) -> Path:
    """Save the final model/adapter + processor + metadata (+ curves) into output_dir."""
    out = Path(trainer.args.output_dir)
    trainer.save_model(str(out))  # weights (or adapter) as safetensors; all ranks take part
    if not trainer.is_world_process_zero():
        return out
    processor.save_pretrained(str(out))  # processor, tokenizer and chat template
    metrics = dict(last_values(trainer.state.log_history), **train_metrics)
    metrics["global_step"] = trainer.state.global_step
    write_metadata(out, dict(metadata, metrics=metrics))
    trainer.save_state()
    if plots:
        write_curves(trainer.state.log_history, out)
    return out
