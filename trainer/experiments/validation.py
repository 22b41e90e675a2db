"""Choosing the demo policy's checkpoint on a validation split, never on the held-out test split.

`split` sets a deterministic share of the training records aside (same image files); the build
trains on the rest. `choose` then picks, among the SFT warm start and GRPO's saved checkpoints,
the one to serve: a GRPO checkpoint only if its mean validation accuracy over both modes beats
the warm start's and neither mode is worse; otherwise the SFT policy is served, and the build says
plainly that GRPO did not improve it. The test split is read only to report the choice.

    fit, val = split(work / "data" / "train.json", 0.05, work / "data")
    chosen, why = choose(sft_figures, {checkpoint: figures, ...})
"""

import json
from pathlib import Path

from medr1_demo.protocol import MODES


def split(train_file: Path, fraction: float, folder: Path) -> tuple[Path, Path]:
    """train-fit.json and validation.json in `folder`: every k-th record (k = 1 / fraction)
    of `train_file` is validation, spread evenly over modalities and question types."""
    records = json.loads(Path(train_file).read_text(encoding="utf-8"))
    every = max(2, round(1 / fraction))
    fit = [r for i, r in enumerate(records) if i % every != every - 1]
    held = [r for i, r in enumerate(records) if i % every == every - 1]
    fit_file, val_file = folder / "train-fit.json", folder / "validation.json"
    fit_file.write_text(json.dumps(fit), encoding="utf-8")
    val_file.write_text(json.dumps(held), encoding="utf-8")
    return fit_file, val_file


def checkpoints(run: Path) -> list[Path]:
    """A training run's saved checkpoints in step order, then its final folder."""
    saved = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return [*saved, run]


def mean_accuracy(figures: dict) -> float:
    return sum(figures[mode]["accuracy"] for mode in MODES) / len(MODES)


def choose(sft: dict, candidates: dict) -> tuple[Path | None, str]:
    """The GRPO checkpoint to serve (None: the SFT policy), and why, from validation figures."""
    best, best_mean = None, mean_accuracy(sft)
    for path, figures in candidates.items():
        no_worse = all(figures[m]["accuracy"] >= sft[m]["accuracy"] for m in MODES)
        if no_worse and mean_accuracy(figures) > best_mean:
            best, best_mean = path, mean_accuracy(figures)
    if best is None:
        return None, (
            "GRPO did not improve on the SFT warm start on the validation split (no checkpoint "
            "was better in mean accuracy without being worse in a mode), so the SFT policy is "
            "served"
        )
    gain = 100 * (best_mean - mean_accuracy(sft))
    return best, f"{best.name}: {gain:+.1f} points of mean validation accuracy over SFT"
