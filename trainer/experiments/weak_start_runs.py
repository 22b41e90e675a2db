"""The weak-start GRPO experiment over many seeds and float environments, with tables and figures.

    python -m trainer weak-start --seeds 0 1 2 3 4 --threads 1 2 --out runs/weak-start
    python -m trainer.experiments.weak_start_runs --out runs/weak-start     # redraw from finished runs

Every (seed, thread count) is one `python -m trainer weak-start` run in its own process with
`OMP_NUM_THREADS` set: the thread count changes the order of float reductions, so it stands in
for another machine. Runs share the cores (a 1-thread run takes one, a 2-thread run two).
Writes to `--out`, beside the run folders `seed-S-threads-T/` and their logs:

    weak-start-runs.json / .csv   every run (seed, threads, held-out before/after, gain, reward
                                  and entropy first/last), mean and sample std over runs
    weak-start-runs.png           held-out accuracy before and after GRPO, per run
    weak-start-curves.png / .csv  accuracy reward, entropy and zero-spread groups, every run
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from trainer.experiments.weak_start import CURVE_KEYS

RUN_FIELDS = (
    "seed", "threads", "before", "after", "gain", "reward_first", "reward_last",
    "entropy_first", "entropy_last", "entropy_lowest", "zero_std_last", "seconds",
)  # fmt: skip
SMOOTH = 20  # steps averaged in the curves figure: one step's reward is 32 coin flips


def run_name(seed: int, threads: int) -> str:
    return f"seed-{seed}-threads-{threads}"


def launch(out: Path, seed: int, threads: int, flags: list[str]) -> subprocess.Popen:
    """Start one run in its own process, its output in `out/logs/<run>.log`."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "trainer.experiments.weak_start", "--seed", str(seed)]
    command += ["--out", str(out / run_name(seed, threads)), *flags]
    log = (out / "logs" / f"{run_name(seed, threads)}.log").open("w", encoding="utf-8")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def run_all(out: Path, seeds, threads, flags: list[str], cores: int | None = None) -> int:
    """Every (seed, thread count), at most `cores` threads at once; tables and figures after."""
    from trainer.experiments.weak_start import summary_line

    cores = cores or os.cpu_count() or 1
    (out / "logs").mkdir(parents=True, exist_ok=True)
    waiting = [(seed, count) for count in threads for seed in seeds]
    running, failed = {}, []
    print(f"{len(waiting)} runs, {cores} threads at once; logs in {out / 'logs'}", flush=True)
    while waiting or running:
        while waiting and sum(running.values()) + waiting[0][1] <= max(cores, waiting[0][1]):
            seed, count = waiting.pop(0)
            running[(launch(out, seed, count, flags), seed)] = count
        time.sleep(1)
        for (process, seed), count in list(running.items()):
            if process.poll() is None:
                continue
            del running[(process, seed)]
            folder = out / run_name(seed, count)
            if process.returncode != 0:
                failed.append(run_name(seed, count))
                print(f"{run_name(seed, count)}: FAILED (exit {process.returncode})", flush=True)
                continue
            report = json.loads((folder / "weak_start.json").read_text(encoding="utf-8"))
            print(f"{run_name(seed, count)}: {summary_line(report)}", flush=True)
    collect(out)
    if failed:
        print(f"failed runs: {', '.join(failed)}; see {out / 'logs'}", file=sys.stderr)
    return 1 if failed else 0


def run_row(report: dict, threads: int) -> dict:
    """The table row of one finished run."""
    held_out = report["held_out"]
    return {
        "seed": report["settings"]["seed"],
        "threads": threads,
        "before": held_out["after_sft"]["accuracy"],
        "after": held_out["after_grpo"]["accuracy"],
        "gain": report["gain"],
        "reward_first": report["accuracy_reward"]["first_10_steps"],
        "reward_last": report["accuracy_reward"]["last_10_steps"],
        "entropy_first": report["entropy"]["first_10_steps"],
        "entropy_last": report["entropy"]["last_10_steps"],
        "entropy_lowest": report["entropy"]["lowest"],
        "zero_std_last": sum(report["curves"]["zero_std"][-10:]) / 10,
        "seconds": report["seconds"]["total"],
    }


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation, lowest and highest."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values)}


def collect(out: Path) -> dict:
    """Read every finished run under `out`; write the tables and figures; the summary."""
    reports = {}
    for path in sorted(out.glob("seed-*-threads-*/weak_start.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        threads = int(path.parent.name.rsplit("-", 1)[1])
        reports[(report["settings"]["seed"], threads)] = report
    if not reports:
        raise SystemExit(f"no finished runs under {out}")
    keys = sorted(reports, key=lambda k: (k[1], k[0]))
    rows = [run_row(reports[k], k[1]) for k in keys]
    worst = min(rows, key=lambda r: r["gain"])
    first = reports[keys[0]]
    summary = {
        "task": first["task"],
        "held_out_questions": first["held_out"]["after_sft"]["items"],
        "train_questions": first["train_questions"],
        "runs": len(rows),
        "before": spread([r["before"] for r in rows]),
        "after": spread([r["after"] for r in rows]),
        "gain": spread([r["gain"] for r in rows]),
        "worst_run": worst,
        "settings": {k: v for k, v in first["settings"].items() if k != "seed"},
    }
    (out / "weak-start-runs.json").write_text(
        json.dumps(dict(summary, table=rows), indent=2) + "\n", encoding="utf-8"
    )
    write_table(out / "weak-start-runs.csv", rows, RUN_FIELDS)
    curve_rows = [
        {"seed": k[0], "threads": k[1], "step": step + 1,
         **{name: reports[k]["curves"][name][step] for name in CURVE_KEYS}}
        for k in keys for step in range(len(reports[k]["curves"]["reward"]))
    ]  # fmt: skip
    write_table(out / "weak-start-curves.csv", curve_rows, ("seed", "threads", "step", *CURVE_KEYS))
    draw_runs(rows, summary, out / "weak-start-runs.png")
    draw_curves({k: reports[k]["curves"] for k in keys}, out / "weak-start-curves.png")
    gain = summary["gain"]
    print(f"{len(rows)} runs: held-out gain {100 * gain['mean']:+.1f} +- {100 * gain['std']:.1f} "
          f"points (lowest {100 * gain['min']:+.1f}, {run_name(worst['seed'], worst['threads'])}); "
          f"tables and figures in {out}")  # fmt: skip
    return summary


def write_table(path: Path, rows: list[dict], fields) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


def draw_runs(rows: list[dict], summary: dict, path: Path) -> None:
    """Held-out accuracy after SFT and after GRPO, one pair of dots per run, and the gains."""
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas for PNG

    figure = Figure(figsize=(10, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=(3, 2))
    x = range(len(rows))
    labels = [f"s{r['seed']}\n{r['threads']}t" for r in rows]
    for i, row in zip(x, rows, strict=True):
        left.plot([i, i], [100 * row["before"], 100 * row["after"]], color="#9aa5b1", zorder=1)
    left.scatter(x, [100 * r["before"] for r in rows], color="#9aa5b1", label="after SFT", zorder=2)
    left.scatter(x, [100 * r["after"] for r in rows], color="#2b6cb0", label="after GRPO", zorder=2)
    for key, color in (("before", "#9aa5b1"), ("after", "#2b6cb0")):
        left.axhline(100 * summary[key]["mean"], color=color, linestyle=":", linewidth=1)
    left.axhline(25, color="#c53030", linewidth=0.8, linestyle="--", label="chance (4 options)")
    left.set_xticks(list(x), labels, fontsize=8)
    left.set_ylabel(f"held-out accuracy, % ({summary['held_out_questions']} questions)")
    left.set_title("per run: seed, OMP threads", fontsize=10)
    left.legend(fontsize=8, loc="lower right")
    gains = [100 * r["gain"] for r in rows]
    right.bar(list(x), gains, color=["#2b6cb0" if r["threads"] == 1 else "#63b3ed" for r in rows])
    right.axhline(100 * summary["gain"]["mean"], color="black", linestyle=":", linewidth=1,
                  label=f"mean {100 * summary['gain']['mean']:+.1f}")  # fmt: skip
    right.set_xticks(list(x), labels, fontsize=8)
    right.set_ylabel("gain, points")
    right.set_title("GRPO's gain per run (dark: 1 thread)", fontsize=10)
    right.legend(fontsize=8)
    for axes in (left, right):
        axes.grid(alpha=0.3, axis="y")
    figure.savefig(path, dpi=110)


def smooth(values: list[float], width: int = SMOOTH) -> list[float]:
    """Trailing mean over `width` steps (fewer at the start)."""
    sums, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - width] if i >= width else 0.0)
        sums.append(total / min(i + 1, width))
    return sums


def draw_curves(curves: dict, path: Path) -> None:
    """Accuracy reward, entropy and zero-spread share per step, one line per run."""
    from matplotlib.figure import Figure

    titles = {"reward": "accuracy reward (training samples)", "entropy": "entropy (nats/token)",
              "zero_std": "groups with no reward spread"}  # fmt: skip
    figure = Figure(figsize=(13, 3.8), layout="constrained")
    panels = figure.subplots(1, len(CURVE_KEYS))
    seeds = sorted({seed for seed, _ in curves})
    colors = dict(zip(seeds, ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280",
                              "#4a5568", "#b7791f", "#319795"), strict=False))  # fmt: skip
    for axes, name in zip(panels, CURVE_KEYS, strict=True):
        for (seed, threads), series in curves.items():
            axes.plot(range(1, len(series[name]) + 1), smooth(series[name]), linewidth=1,
                      color=colors.get(seed, "gray"), linestyle="-" if threads == 1 else "--",
                      label=f"seed {seed}, {threads} thread{'s' * (threads > 1)}")  # fmt: skip
        axes.set_title(f"{titles[name]}, mean of {SMOOTH} steps", fontsize=9)
        axes.set_xlabel("GRPO step")
        axes.grid(alpha=0.3)
    panels[0].legend(fontsize=6, ncol=2)
    figure.savefig(path, dpi=110)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.experiments.weak_start_runs", description=__doc__
    )
    parser.add_argument("--out", default="runs/weak-start", help="folder of finished runs")
    args = parser.parse_args(argv)
    collect(Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
