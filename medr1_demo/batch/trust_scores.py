"""The trust aids over many answers: how often each check fires, and how well-calibrated each mode is.

`python -m trainer eval --checks` writes these beside the accuracy summary (checks.json,
checks.csv, reliability.csv and one reliability diagram per mode). Like `scores`, everything is
computed from the result lines alone (`results.jsonl`), so the report can be rebuilt from that
file; the lines come from `runner.aided_lines` (a `probability`, the `checks` verdicts and each
control's answer in `controls`).

Per mode, for every test file, modality, question type and overall:

- **image unchanged**: the share of answers that stay the same letter when the scan is replaced by
  mid-grey (the image-reliance rate; high means the answers hardly depend on the image), and
  **flagged**: the share the page flags as "does not depend on the image" (same letter and total
  variation below `trust.IMAGE_TV_THRESHOLD`);
- **order holds**: the share whose chosen option text holds when the options are rotated, and
  **follows position**: the share that keeps the letter (so another option);
- **probability when right / wrong**: the mean probability of the chosen option;
- **ECE**: expected calibration error of that probability against being right, over
  `BINS` equal-width bins (sum over bins of |accuracy - mean probability| x share of answers);
- **rationale agrees** (thinking): among rationales that end by naming an option, the share that
  name the answered one; **no conclusion**: the share that name none.

A rate is over the answers where it can be judged (both letters valid, a probability present);
`n_*` says how many. These measure the policy's behaviour, not whether an answer is right.

    report = trust_scores.summarise(results, modes=("thinking", "no-thinking"))
    print(trust_scores.format_table(report))
"""

import csv
import json
from pathlib import Path

from medr1_demo.batch.scores import (
    GROUPING_LABELS,
    GROUPINGS,
    by_group,
    csv_value,
    mean,
    percent,
    selected,
)
from medr1_demo.policy.trust import IMAGE, ORDER
from medr1_demo.protocol import THINKING

BINS = 10
FIGURES = ("image_unchanged", "image_flagged", "order_holds", "follows_position",
           "p_right", "p_wrong", "ece", "rationale_agrees", "no_conclusion")  # fmt: skip
LABELS = {
    "image_unchanged": "same answer without the image",
    "image_flagged": "flagged: does not depend on the image",
    "order_holds": "answer holds with options reordered",
    "follows_position": "answer follows the position",
    "p_right": "mean probability, right answers",
    "p_wrong": "mean probability, wrong answers",
    "ece": "expected calibration error",
    "rationale_agrees": "rationale names the answer",
    "no_conclusion": "rationale names no option",
}
COUNTS = ("n_image", "n_order", "n_probability", "n_rationale")  # what each rate is over
RATIONALE = "rationale"


def _share(hits: list[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


def _pairs(rows: list[dict]) -> list[tuple[float, bool]]:
    """(probability of the chosen option, right) of the rows with both."""
    return [(float(row["probability"]), bool(row.get("correct"))) for row in rows
            if row.get("probability") is not None and row.get("answer") is not None]  # fmt: skip


def reliability_bins(pairs: list[tuple[float, bool]], bins: int = BINS) -> list[dict]:
    """(probability, right) pairs in `bins` equal-width probability bins: each bin's bounds,
    count, mean probability and accuracy (None where empty). A probability of 1 is in the last."""
    groups: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for p, right in pairs:
        groups[min(int(p * bins), bins - 1)].append((p, right))
    return [
        {
            "low": k / bins,
            "high": (k + 1) / bins,
            "n": len(group),
            "probability": mean([p for p, _ in group]),
            "accuracy": _share([right for _, right in group]),
        }
        for k, group in enumerate(groups)
    ]


def expected_calibration_error(pairs: list[tuple[float, bool]], bins: int = BINS) -> float | None:
    """Sum over bins of |accuracy - mean probability|, weighted by the bin's share of answers."""
    if not pairs:
        return None
    return sum(
        b["n"] / len(pairs) * abs(b["accuracy"] - b["probability"])
        for b in reliability_bins(pairs, bins)
        if b["n"]
    )


def _figures(rows: list[dict]) -> dict:
    """The trust figures of one group of result lines (one mode)."""
    image, order, rationale, pairs = [], [], [], _pairs(rows)
    for row in rows:
        checks, controls = row.get("checks") or {}, row.get("controls") or {}
        letter = row.get("prediction")
        grey = (controls.get(IMAGE) or {}).get("letter")
        if IMAGE in checks and letter is not None and grey is not None:
            image.append((grey == letter, checks[IMAGE] == "ignores image"))
        if checks.get(ORDER) in ("holds", "follows position", "changes"):
            order.append(checks[ORDER])
        if RATIONALE in checks:
            rationale.append(checks[RATIONALE])
    concluded = [v for v in rationale if v in ("consistent", "contradicts")]
    return {
        "answers": len(rows),
        "image_unchanged": _share([same for same, _ in image]),
        "image_flagged": _share([flagged for _, flagged in image]),
        "n_image": len(image),
        "order_holds": _share([v == "holds" for v in order]),
        "follows_position": _share([v == "follows position" for v in order]),
        "n_order": len(order),
        "p_right": mean([p for p, right in pairs if right]),
        "p_wrong": mean([p for p, right in pairs if not right]),
        "ece": expected_calibration_error(pairs),
        "n_probability": len(pairs),
        "rationale_agrees": _share([v == "consistent" for v in concluded]),
        "no_conclusion": _share([v == "no conclusion" for v in rationale]),
        "n_rationale": len(rationale),
    }


def summarise(results, modes, ids: set[str] | None = None) -> dict:
    """The trust figures per mode: overall, per test file, modality and question type, and the
    reliability bins of the whole mode."""
    chosen = selected(results, modes, ids)
    per_mode = {}
    for mode in modes:
        rows = [row for (_, m), row in sorted(chosen.items()) if m == mode]
        per_mode[mode] = {**by_group(rows, _figures), "reliability": reliability_bins(_pairs(rows))}
    return {"modes": list(modes), "bins": BINS, "results": per_mode}


# ------------------------------------------------------------------------------------- output


def csv_rows(report: dict) -> list[dict]:
    rows = []
    for mode, entry in report["results"].items():
        rows.append(
            {"grouping": "overall", "group": "all answers", "mode": mode, **entry["overall"]}
        )
        for grouping in GROUPINGS:
            for name, figures in entry[grouping].items():
                rows.append({"grouping": grouping, "group": name, "mode": mode, **figures})
    return rows


def write_report(report: dict, folder) -> list[Path]:
    """checks.json, checks.csv (one row per group and mode) and reliability.csv (the bins)."""
    folder = Path(folder)
    paths = [folder / "checks.json", folder / "checks.csv", folder / "reliability.csv"]
    paths[0].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    fields = ["grouping", "group", "mode", "answers", *FIGURES, *COUNTS]
    with open(paths[1], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in csv_rows(report):
            writer.writerow({k: csv_value(row.get(k)) for k in fields})
    with open(paths[2], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["mode", "low", "high", "n", "probability",
                                                    "accuracy"])  # fmt: skip
        writer.writeheader()
        for mode, entry in report["results"].items():
            for b in entry["reliability"]:
                writer.writerow({"mode": mode, **{k: csv_value(v) for k, v in b.items()}})
    return paths


def format_table(report: dict) -> str:
    """A plain-text table: one block per figure, a column per mode, a row per group."""
    modes, results = report["modes"], report["results"]
    names = [("overall", "all answers")] + [
        (g, n) for g in GROUPINGS for n in sorted({n for e in results.values() for n in e[g]})
    ]
    shown = {(g, n): n if g == "overall" else f"{n} ({GROUPING_LABELS[g]})" for g, n in names}
    width = max([28] + [len(label) + 4 for label in shown.values()])
    lines = ["Trust checks (%; ECE in percentage points)", " " * width + "".join(
        f"{m:>14}" for m in modes)]  # fmt: skip
    for figure in FIGURES:
        if figure in ("rationale_agrees", "no_conclusion") and THINKING not in modes:
            continue
        lines.append(LABELS[figure])
        for grouping, name in names:
            cells = [
                (results[m]["overall"] if grouping == "overall" else results[m][grouping].get(name)
                 or {}).get(figure)
                for m in modes
            ]  # fmt: skip
            if all(c is None for c in cells):
                continue
            label = shown[(grouping, name)]
            lines.append(f"  {label:<{width - 2}}" + "".join(f"{percent(c):>14}" for c in cells))
    lines.append("A blank (-) cell: no answer where it could be judged (see checks.json's n_*).")
    return "\n".join(lines)
