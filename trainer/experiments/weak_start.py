"""GRPO from a deliberately weak warm start: the experiment behind docs/grpo-phantoms.md.

    python -m trainer weak-start --seed 0 --out runs/weak-start/seed-0     # one run
    python -m trainer weak-start --seeds 0 1 2 3 4 --threads 1 2 --out runs/weak-start  # many

A small Qwen2-VL (built with `medr1_demo.policy.tiny`) learns modality recognition on phantom scans, in
no-thinking mode. A short SFT run teaches it the answer format and only a little of which modality
is which; GRPO with Med-R1's accuracy and format rewards must then find the right letters by
sampling. Held-out accuracy is measured before and after GRPO by `python -m trainer eval`
(greedy). The seed varies the whole run: which phantoms are drawn, the base model's weights (and
its tokenizer's training text), the SFT batches and GRPO's samples.

One run writes to `--out`: `weak_start.json` (figures, settings, curves), the GRPO run's
`training_curves.png/csv` and every intermediate run. `tests/test_grpo_learns.py` runs one with
these defaults. `--seeds` and `--threads` hand over to `trainer.experiments.weak_start_runs`, which runs
every (seed, thread count) in its own process and writes the tables and figures of all of them.
"""

import argparse
import csv
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from trainer.experiments import demo_policy as demo

ROOT = Path(__file__).resolve().parents[2]
TASK = "Modality Recognition"
MODE = "no-thinking"
EVAL = {"batch_size": 64, "max_new_tokens": 16}
REWARD = "rewards/accuracy_reward/mean"
CURVE_KEYS = {"reward": REWARD, "entropy": "entropy", "zero_std": "frac_reward_zero_std"}


@dataclass(frozen=True)
class Settings:
    """Everything that decides a run; the seed varies data, base, SFT and GRPO alike."""

    seed: int = 0
    n: int = 10000  # phantoms planned; only the modality-recognition ones (a fifth) are drawn
    test_fraction: float = 0.2  # 400 held-out questions at n=10000
    image_size: int = 56
    base: tuple = (("text_hidden", 96), ("heads", 4), ("intermediate", 192), ("vision_embed", 64))
    sft_steps: int = 160  # batch 8: format learned, modalities barely
    sft_learning_rate: float = 5e-3
    grpo_steps: int = 300
    grpo_learning_rate: float = 5e-4
    questions_per_step: int = 4
    num_generations: int = 8
    beta: float = 0.04  # Med-R1's KL weight: keeps the policy near its warm start, entropy up
    temperature: float = 1.0
    top_k: int = 50  # what Med-R1's TRL 0.14 sampled with (transformers' default)
    num_iterations: int = 1
    epsilon: float = 0.2
    lr_scheduler: str = "linear"
    grpo_flags: tuple = ()  # any further `python -m trainer grpo` flags, for exploring


def write_task_data(folder: Path, settings: Settings) -> tuple[Path, Path]:
    """train.json / test.json of the modality-recognition items of a `trainer.synth` run.

    The same plan and split as `synth.write_dataset(folder, n, seed, test_fraction)`, so the
    records and PNGs are those that command writes, but only this task's fifth is drawn.
    """
    from trainer.phantoms import synth
    from trainer.phantoms.questions import FOLDERS

    if folder.exists():
        shutil.rmtree(folder)
    for name in FOLDERS.values():
        (folder / "Images" / name).mkdir(parents=True)
    items = synth.plan(settings.n, settings.seed)
    files = []
    for name, part in zip(
        ("train", "test"), synth.split(items, settings.seed, settings.test_fraction), strict=True
    ):
        mine = [item for item in part if item.question_type == TASK]
        for item in mine:
            synth.write_item(folder, item, settings.seed, settings.image_size, dicom=False)
        path = folder / f"{name}.json"
        path.write_text(json.dumps([item.record(dicom=False) for item in mine]), encoding="utf-8")
        files.append(path)
    return files[0], files[1]


def train(kind: str, model: Path, data: Path, out: Path, settings: Settings, *flags: str) -> None:
    """`python -m trainer <kind> --config configs/tiny/<kind>.yaml ...` in no-thinking mode."""
    recipe = str(ROOT / "configs" / "tiny" / f"{kind}.yaml")
    flags = ["--mode", MODE, "--save_strategy", "no", "--seed", str(settings.seed), *flags]
    demo.train(kind, recipe, model, data, out, settings.image_size, flags)


def grpo_flags(settings: Settings) -> list[str]:
    """The recipe overrides of the GRPO stage (`configs/tiny/grpo.yaml` holds the rest)."""
    batch = settings.questions_per_step * settings.num_generations
    flags = {
        "max_steps": settings.grpo_steps,
        "learning_rate": settings.grpo_learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "beta": settings.beta,
        "num_generations": settings.num_generations,
        "per_device_train_batch_size": batch,
        "temperature": settings.temperature,
        "top_k": settings.top_k,
        "num_iterations": settings.num_iterations,
        "epsilon": settings.epsilon,
        "logging_steps": 1,
    }
    return [part for key, value in flags.items() for part in (f"--{key}", str(value))]


def accuracy(model: Path, test: Path, out: Path, image_size: int) -> dict:
    """Held-out accuracy and format kept, greedy, as `python -m trainer eval` reports them."""
    figures = demo.evaluate(model, test, out, image_size, EVAL, modes=(MODE,))[MODE]
    return {k: figures[k] for k in ("items", "accuracy", "format_kept")}


def read_curves(path: Path) -> dict[str, list[float]]:
    """Per logged GRPO step: accuracy reward, entropy, share of groups with no reward spread."""
    with path.open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get(REWARD)]
    return {name: [float(row[key]) for row in rows] for name, key in CURVE_KEYS.items()}


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def experiment(out: Path, settings: Settings = Settings()) -> dict:
    """Run it all in `out` (replaced); the figures, also written to `out/weak_start.json`."""
    from medr1_demo.policy.tiny import build_tiny_checkpoint

    if out.exists():
        shutil.rmtree(out)
    seconds = {}
    started = time.perf_counter()
    size = settings.image_size
    train_file, test_file = write_task_data(out / "phantoms", settings)
    pixels = size * size
    base = build_tiny_checkpoint(
        out / "base", seed=settings.seed, min_pixels=pixels, max_pixels=pixels,
        **dict(settings.base),
    )  # fmt: skip
    seconds["data_and_base"] = time.perf_counter() - started
    clock = time.perf_counter()
    train("sft", base, train_file, out / "sft", settings, "--max_steps", str(settings.sft_steps),
          "--learning_rate", str(settings.sft_learning_rate),
          "--per_device_train_batch_size", "8")  # fmt: skip
    seconds["sft"] = time.perf_counter() - clock
    clock = time.perf_counter()
    before = accuracy(out / "sft", test_file, out / "eval-sft", size)
    clock, seconds["eval_sft"] = time.perf_counter(), time.perf_counter() - clock
    train("grpo", out / "sft", train_file, out / "grpo", settings, *grpo_flags(settings),
          *settings.grpo_flags)  # fmt: skip
    clock, seconds["grpo"] = time.perf_counter(), time.perf_counter() - clock
    after = accuracy(out / "grpo", test_file, out / "eval-grpo", size)
    seconds["eval_grpo"] = time.perf_counter() - clock
    seconds["total"] = time.perf_counter() - started
    curves = read_curves(out / "grpo" / "training_curves.csv")
    report = {
        "task": f"{TASK}, {MODE}, phantoms at {size} px",
        "train_questions": len(json.loads(train_file.read_text())),
        "held_out": {"after_sft": before, "after_grpo": after},
        "gain": after["accuracy"] - before["accuracy"],
        "accuracy_reward": {
            "first_10_steps": mean(curves["reward"][:10]),
            "last_10_steps": mean(curves["reward"][-10:]),
        },
        "entropy": {
            "first_10_steps": mean(curves["entropy"][:10]),
            "last_10_steps": mean(curves["entropy"][-10:]),
            "lowest": min(curves["entropy"]),
        },  # fmt: skip
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "settings": asdict(settings),
        "curves": curves,
    }
    (out / "weak_start.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name in ("training_curves.png", "training_curves.csv"):
        shutil.copy2(out / "grpo" / name, out / name)
    return report


def summary_line(report: dict) -> str:
    """One line of figures for a finished run."""
    before, after = report["held_out"]["after_sft"], report["held_out"]["after_grpo"]
    reward, entropy = report["accuracy_reward"], report["entropy"]
    return (
        f"held-out ({before['items']}) {100 * before['accuracy']:.1f}% -> "
        f"{100 * after['accuracy']:.1f}% (gain {100 * report['gain']:+.1f}); reward "
        f"{reward['first_10_steps']:.2f} -> {reward['last_10_steps']:.2f}; entropy "
        f"{entropy['first_10_steps']:.2f} -> {entropy['last_10_steps']:.2f} "
        f"(lowest {entropy['lowest']:.2f}); {report['seconds']['total']:.0f} s"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer weak-start", description=__doc__)
    parser.add_argument("--out", default="runs/weak-start", help="output folder (replaced)")
    parser.add_argument("--seed", type=int, default=Settings.seed, help="one run's seed")
    parser.add_argument("--seeds", type=int, nargs="+", help="many runs: these seeds ...")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="... each with these OMP_NUM_THREADS (with --seeds)")  # fmt: skip
    parser.add_argument("--jobs_cores", type=int, default=None,
                        help="with --seeds: threads in use at once (default: all cores)")  # fmt: skip
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)  # a mistyped setting stops here, before any run starts
    if args.seeds:
        from trainer.experiments import weak_start_runs

        return weak_start_runs.run_all(Path(args.out), args.seeds, args.threads, rest,
                                       args.jobs_cores)  # fmt: skip
    settings = Settings(seed=args.seed, **overrides)
    report = experiment(Path(args.out), settings)
    print(f"seed {settings.seed}: {summary_line(report)}")
    print(f"figures in {args.out}/weak_start.json, curves in {args.out}/training_curves.png")
    return 0


def parse_overrides(argv: list[str]) -> dict:
    """`--name value` pairs for Settings fields (types from the defaults); `--grpo_flags "..."`."""
    import shlex

    defaults = asdict(Settings())
    overrides = {}
    for name, value in zip(argv[::2], argv[1::2], strict=True):
        key = name.removeprefix("--")
        if key not in defaults or key in ("seed", "base"):
            raise SystemExit(f"python -m trainer weak-start: unknown setting {name}")
        kind = type(defaults[key])
        overrides[key] = tuple(shlex.split(value)) if kind is tuple else kind(value)
    return overrides


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
