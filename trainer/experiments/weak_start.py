"""GRPO from a deliberately weak warm start: the experiment behind docs/grpo-phantoms.md.

    python -m trainer.experiments.weak_start --out runs/weak-start    # about 3 minutes on 2 cores

A small Qwen2-VL (built with `medr1_demo.policy.tiny`) learns modality recognition on phantom scans, in
no-thinking mode. A short SFT run teaches it the answer format and only a little of which modality
is which; GRPO with Med-R1's accuracy and format rewards (8 samples per question, no KL term) must
then find the right letters by sampling. Held-out accuracy is measured before and after GRPO by
`python -m trainer eval` (greedy). Writes to `--out`: `weak_start.json` (figures and settings),
the GRPO run's `training_curves.png/csv`, and every intermediate run. `tests/test_grpo_learns.py`
runs it with these defaults.

The result depends on the sizes: with a quarter of the data (`--n 1000`, 40 held-out questions)
the same GRPO settings raise the training reward less and leave held-out accuracy where it was.
"""

import argparse
import csv
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from trainer.experiments import demo_policy as demo

ROOT = Path(__file__).resolve().parents[2]
TASK = "Modality Recognition"
MODE = "no-thinking"
EVAL = {"batch_size": 64, "max_new_tokens": 16}
REWARD = "rewards/accuracy_reward/mean"


@dataclass(frozen=True)
class Settings:
    n: int = 4000  # phantoms drawn; 4% of them are held-out modality-recognition questions
    seed: int = 3
    image_size: int = 56
    sft_steps: int = 160  # batch 8: format learned, modalities barely
    grpo_steps: int = 500  # 4 questions x 8 samples per step
    grpo_learning_rate: float = 2e-3
    base: tuple = (("text_hidden", 96), ("heads", 4), ("intermediate", 192), ("vision_embed", 64))


def task_split(folder: Path, name: str) -> Path:
    """The modality-recognition records of `folder/name`, written beside it (same image paths)."""
    records = json.loads((folder / name).read_text(encoding="utf-8"))
    out = folder / f"mr-{name}"
    out.write_text(json.dumps([r for r in records if r["question_type"] == TASK]), encoding="utf-8")
    return out


def train(kind: str, model: Path, data: Path, out: Path, image_size: int, *flags: str) -> None:
    """`python -m trainer <kind> --config configs/tiny/<kind>.yaml ...` in no-thinking mode."""
    recipe = str(ROOT / "configs" / "tiny" / f"{kind}.yaml")
    demo.train(kind, recipe, model, data, out, image_size,
               ["--mode", MODE, "--save_strategy", "no", *flags])  # fmt: skip


def accuracy(model: Path, test: Path, out: Path, image_size: int) -> dict:
    """Held-out accuracy and format kept, greedy, as `python -m trainer eval` reports them."""
    figures = demo.evaluate(model, test, out, image_size, EVAL, modes=(MODE,))[MODE]
    return {k: figures[k] for k in ("items", "accuracy", "format_kept")}


def accuracy_rewards(curves: Path) -> list[float]:
    """The mean accuracy reward of every logged GRPO step, from the run's training_curves.csv."""
    with curves.open(encoding="utf-8") as handle:
        return [float(row[REWARD]) for row in csv.DictReader(handle) if row.get(REWARD)]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def experiment(out: Path, settings: Settings = Settings()) -> dict:
    """Run it all in `out` (replaced); the figures, also written to `out/weak_start.json`."""
    from medr1_demo.policy.tiny import build_tiny_checkpoint
    from trainer.phantoms.synth import write_dataset

    if out.exists():
        shutil.rmtree(out)
    data = out / "phantoms"
    size = settings.image_size
    write_dataset(
        data, settings.n, seed=settings.seed, image_size=size, dicom=False, progress=False
    )
    train_file, test_file = task_split(data, "train.json"), task_split(data, "test.json")
    pixels = size * size
    base = build_tiny_checkpoint(
        out / "base", seed=0, min_pixels=pixels, max_pixels=pixels, **dict(settings.base)
    )
    train("sft", base, train_file, out / "sft", size, "--max_steps", str(settings.sft_steps),
          "--learning_rate", "5e-3", "--per_device_train_batch_size", "8")  # fmt: skip
    before = accuracy(out / "sft", test_file, out / "eval-sft", size)
    train(
        "grpo", out / "sft", train_file, out / "grpo", size,
        "--max_steps", str(settings.grpo_steps),
        "--learning_rate", str(settings.grpo_learning_rate), "--beta", "0.0",
        "--num_generations", "8", "--per_device_train_batch_size", "32", "--logging_steps", "1",
    )  # fmt: skip
    after = accuracy(out / "grpo", test_file, out / "eval-grpo", size)
    rewards = accuracy_rewards(out / "grpo" / "training_curves.csv")
    report = {
        "task": f"{TASK}, {MODE}, phantoms at {size} px",
        "train_questions": len(json.loads(train_file.read_text())),
        "held_out": {"after_sft": before, "after_grpo": after},
        "accuracy_reward": {
            "first_10_steps": mean(rewards[:10]),
            "last_10_steps": mean(rewards[-10:]),
        },
        "reward_curve": rewards,
        "settings": asdict(settings),
    }
    (out / "weak_start.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name in ("training_curves.png", "training_curves.csv"):
        shutil.copy2(out / "grpo" / name, out / name)
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.experiments.weak_start", description=__doc__
    )
    parser.add_argument("--out", default="runs/weak-start", help="output folder (replaced)")
    parser.add_argument("--n", type=int, default=Settings.n, help="phantoms drawn")
    parser.add_argument("--grpo_steps", type=int, default=Settings.grpo_steps)
    parser.add_argument("--grpo_learning_rate", type=float, default=Settings.grpo_learning_rate)
    args = parser.parse_args(argv)
    settings = Settings(
        n=args.n, grpo_steps=args.grpo_steps, grpo_learning_rate=args.grpo_learning_rate
    )
    report = experiment(Path(args.out), settings)
    before, after = report["held_out"]["after_sft"], report["held_out"]["after_grpo"]
    rewards = report["accuracy_reward"]
    print(f"held-out accuracy ({before['items']} questions): {100 * before['accuracy']:.1f}% "
          f"after SFT -> {100 * after['accuracy']:.1f}% after GRPO")  # fmt: skip
    print(f"training accuracy reward: {rewards['first_10_steps']:.2f} (first 10 steps) -> "
          f"{rewards['last_10_steps']:.2f} (last 10)")  # fmt: skip
    print(f"figures in {args.out}/weak_start.json, curves in {args.out}/training_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
