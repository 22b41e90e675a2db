"""What a batch leaves: its result lines as CSV and JSON, and the accuracy summary's PNG figure.

One row per (case, mode). The summary table itself is `scores.write_summary` (summary.json and
summary.csv, as `trainer eval` writes them); `accuracy_figure` draws the same numbers: accuracy
per modality, per question type and overall, one bar per mode, with the modes' agreement.

    csv_path, json_path = write_results(lines, folder, "results")
    accuracy_figure(summary, folder / "summary.png")
"""

import csv
import json
from pathlib import Path

from medr1_demo.batch.scores import GROUPING_LABELS

RESULT_FIELDS = ("case", "image", "question", "mode", "answer", "prediction", "probability",
                 "correct", "format_kept", "checks", "modality", "question_type", "tokens",
                 "problem", "raw")  # fmt: skip


def table_row(line: dict) -> dict:
    """A result line as a CSV row: the case's number, the checks as `name: verdict; ...`."""
    checks = line.get("checks") or {}
    return {
        **{k: line.get(k) for k in RESULT_FIELDS},
        "case": line["id"],
        "checks": "; ".join(f"{name}: {verdict}" for name, verdict in checks.items()),
    }


def skipped_line(problem: str) -> dict:
    """A record left out (`row N: reason`) as a line with no mode: its case and the reason."""
    case, _, reason = problem.partition(": ")
    return {"id": case, "mode": "", "problem": reason}


def write_results(
    lines: list[dict], folder, stem: str = "results", skipped=()
) -> tuple[Path, Path]:
    """`stem`.csv and `stem`.json in `folder`: one row per (case, mode), in the lines' order,
    then one per record left out (`skipped`: `row N: reason`), with no mode and its reason."""
    folder = Path(folder)
    csv_path, json_path = folder / f"{stem}.csv", folder / f"{stem}.json"
    lines = [*lines, *(skipped_line(problem) for problem in skipped)]
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        for line in lines:
            writer.writerow({k: "" if v is None else v for k, v in table_row(line).items()})
    json_path.write_text(json.dumps(lines, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return csv_path, json_path


def read_accuracy(csv_path) -> dict[str, float]:
    """mode -> accuracy over the answered rows of a results CSV (for checks and tests)."""
    rows = list(csv.DictReader(open(csv_path, encoding="utf-8")))  # noqa: SIM115
    by_mode: dict[str, list[bool]] = {}
    for row in rows:
        if row["correct"] in ("True", "False"):
            by_mode.setdefault(row["mode"], []).append(row["correct"] == "True")
    return {mode: sum(v) / len(v) for mode, v in by_mode.items()}


def accuracy_figure(summary: dict, path) -> Path:
    """A PNG of accuracy (%) per modality, question type and overall, one bar per mode."""
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas for PNG

    modes, results = summary["modes"], summary["results"]
    labels, values = [], {mode: [] for mode in modes}
    for grouping in ("modality", "question_type"):
        names = sorted({n for entry in results.values() for n in entry[grouping]})
        for name in names:
            labels.append(f"{name} ({GROUPING_LABELS[grouping]})")
            for mode in modes:
                tally = results[mode][grouping].get(name) or {}
                values[mode].append(100 * (tally.get("accuracy") or 0.0))
    labels.append("Overall")
    for mode in modes:
        values[mode].append(100 * (results[mode]["overall"]["accuracy"] or 0.0))
    height = 0.8 / max(1, len(modes))
    figure = Figure(figsize=(8, 1.5 + 0.35 * len(labels) * max(1, len(modes))))
    axes = figure.subplots()
    for k, mode in enumerate(modes):
        where = [i + k * height for i in range(len(labels))]
        bars = axes.barh(where, values[mode], height=height, label=mode)
        axes.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
    axes.set_yticks([i + height * (len(modes) - 1) / 2 for i in range(len(labels))], labels=labels)
    axes.invert_yaxis()
    axes.set_xlim(0, 110)
    axes.set_xlabel("accuracy (%)")
    agree = summary.get("agreement") or {}
    title = f"Accuracy on {summary['items']} cases"
    if agree.get("rate") is not None:
        title += (
            f"; modes agree on {100 * agree['rate']:.1f}% ({agree['same']}/{agree['compared']})"
        )
    axes.set_title(title)
    axes.legend(loc="lower right")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110, format="png")
    return path


def reliability_figure(bins: list[dict], mode: str, ece: float | None, path) -> Path:
    """A PNG reliability diagram of one mode: accuracy against mean probability of the chosen
    option per probability bin (the diagonal is perfect calibration), answers per bin below."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 5.6))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
    filled = [b for b in bins if b["n"]]
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    top.bar([b["low"] for b in filled], [b["accuracy"] for b in filled], width=width,
            align="edge", edgecolor="black", alpha=0.75, label="accuracy")  # fmt: skip
    top.plot([b["probability"] for b in filled], [b["accuracy"] for b in filled], "o",
             color="black", markersize=3, label="mean probability")  # fmt: skip
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("share right")
    shown = "-" if ece is None else f"{100 * ece:.1f} points"
    top.set_title(f"{mode}: {sum(b['n'] for b in bins)} answers, ECE {shown}")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar([b["low"] for b in bins], [b["n"] for b in bins], width=width, align="edge",
               edgecolor="black", color="tab:grey")  # fmt: skip
    bottom.set_xlabel("probability of the chosen option")
    bottom.set_ylabel("answers")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110, format="png")
    return path
