"""Scoring one answer and summarising many: the tables `trainer eval` and the Batch tab write.

No torch and no model here: everything works on the per-item result dicts that the evaluator
writes as JSON Lines (`results.jsonl`), so a summary can always be rebuilt from that file alone:

    from medr1_demo.batch import scores
    lines = open("outputs/eval/VQA_CT/results.jsonl", encoding="utf-8").read().splitlines()
    results = [json.loads(line) for line in lines]
    summary = scores.summarise(results, modes=("thinking", "no-thinking"))
    print(scores.format_table(summary))

Three scorings:

- "tagged" (the default): the answer letter inside `<answer>`, read by `protocol.parse_output`
  for BOTH modes, compared with the ground-truth letter. A completion with no valid letter is wrong.
  Rows asked with the zero-shot prompt (which asks for the letter alone) are read by
  `protocol.parse_bare_answer` instead.
- "official-qwen2-vl": Med-R1's released Qwen2-VL scripts (`src/eval_vqa/test_qwen2vl_vqa*.py`).
  Thinking: the first `<answer>\\s*(\\w+)\\s*</answer>` must hold exactly the letter.
  No-thinking and zero-shot: the raw completion must equal the letter, so a correct
  `<answer>C</answer>` counts as wrong.
- "official-qwen2.5-vl": the Qwen2.5-VL scripts. Thinking as above; no-thinking: when the output
  contains "answer" the letter is taken with that regex, otherwise the raw output must equal it
  (`test_qwen2_5vl_vqa_nothink.py:128-131`).

The official ones are kept only to reproduce published numbers; see docs/evaluation.md.

Accuracy is correct / items, per group; "mean over <groups>" is the unweighted mean of the groups'
accuracies (each test file, modality or question type counts once, whatever its size).
"""

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from medr1_demo.protocol import (
    MODES,
    THINKING,
    TRAINING_PROMPTS,
    ZERO_SHOT_PROMPTS,
    parse_bare_answer,
    parse_output,
)

TAGGED = "tagged"
OFFICIAL_QWEN2_VL, OFFICIAL_QWEN2_5_VL = "official-qwen2-vl", "official-qwen2.5-vl"
OFFICIAL = OFFICIAL_QWEN2_VL  # what `--official_scoring` alone has always meant
SCORINGS = (TAGGED, OFFICIAL_QWEN2_VL, OFFICIAL_QWEN2_5_VL)
# `--official_scoring MODEL` -> the scoring; the result line's field holding it per item
OFFICIAL_RULES = {"qwen2-vl": OFFICIAL_QWEN2_VL, "qwen2.5-vl": OFFICIAL_QWEN2_5_VL}
CORRECT_FIELDS = {
    TAGGED: "correct",
    OFFICIAL_QWEN2_VL: "correct_official",
    OFFICIAL_QWEN2_5_VL: "correct_official_qwen2.5-vl",
}
SUMMARY_STEMS = {
    TAGGED: "summary",
    OFFICIAL_QWEN2_VL: "summary_official",
    OFFICIAL_QWEN2_5_VL: "summary_official_qwen2.5-vl",
}
SCORING_LABELS = {
    TAGGED: "answer letter inside <answer>, both modes",
    OFFICIAL_QWEN2_VL: "Med-R1's Qwen2-VL scripts (no-thinking: raw output must equal the letter)",
    OFFICIAL_QWEN2_5_VL: "Med-R1's Qwen2.5-VL scripts (no-thinking: the tag's letter when the "
    "output says 'answer', else the raw output)",
}
GROUPINGS = ("file", "modality", "question_type")
GROUPING_LABELS = {"file": "test file", "modality": "modality", "question_type": "question type"}
GROUPING_PLURALS = {
    "file": "test files",
    "modality": "modalities",
    "question_type": "question types",
}
_OFFICIAL_ANSWER = re.compile(r"<answer>\s*(\w+)\s*</answer>")


def scoring_for(official: str | bool | None) -> str:
    """The scoring an `--official_scoring` value asks for (True, the old flag: qwen2-vl)."""
    if not official:
        return TAGGED
    if official is True:
        return OFFICIAL
    if official not in OFFICIAL_RULES:
        known = ", ".join(OFFICIAL_RULES)
        raise ValueError(f"official_scoring takes {known} (or true: qwen2-vl), not {official!r}.")
    return OFFICIAL_RULES[official]


def _tag_letter(text: str) -> str | None:
    match = _OFFICIAL_ANSWER.search(text)
    return match.group(1) if match else None


def official_correct(text: str, mode: str, letter: str, scoring: str = OFFICIAL_QWEN2_VL) -> bool:
    """Med-R1's released scoring of one completion (`scoring`: one of the official ones)."""
    if mode == THINKING:  # both models' thinking scripts: the tag regex
        return _tag_letter(text) == letter
    if scoring == OFFICIAL_QWEN2_5_VL and "answer" in text:
        return _tag_letter(text) == letter
    return text == letter  # Qwen2-VL no-thinking and zero-shot: the raw output


def score(
    text: str, mode: str, letter: str, n_options: int, prompts: str = TRAINING_PROMPTS
) -> dict:
    """One completion against the ground-truth letter -> the scoring fields of a result line."""
    if prompts == ZERO_SHOT_PROMPTS:
        parsed = parse_bare_answer(text, n_options)
    else:
        parsed = parse_output(text, mode, n_options)
    return {
        "prediction": parsed.letter,
        "correct": parsed.letter == letter,
        "correct_official": official_correct(text, mode, letter, OFFICIAL_QWEN2_VL),
        "correct_official_qwen2.5-vl": official_correct(text, mode, letter, OFFICIAL_QWEN2_5_VL),
        "format_kept": parsed.format_ok,
        "problem": parsed.problem,
    }


def is_correct(row: dict, scoring: str) -> bool:
    """A result line under `scoring`; lines written before a scoring existed are scored from `raw`."""
    field = CORRECT_FIELDS[scoring]
    if field in row:
        return bool(row[field])
    return official_correct(row["raw"], row["mode"], row["answer"], scoring)


# ------------------------------------------------------------------------------------ results


def latest(results: Iterable[dict]) -> dict[tuple[str, str], dict]:
    """(id, mode) -> its result; a later line for the same pair replaces an earlier one."""
    return {(row["id"], row["mode"]): row for row in results}


def selected(
    results: Iterable[dict], modes, ids: set[str] | None = None
) -> dict[tuple[str, str], dict]:
    """The latest result of each (id, mode) of `modes`, only of the items in `ids` when given."""
    return {
        pair: row
        for pair, row in latest(results).items()
        if pair[1] in modes and (ids is None or pair[0] in ids)
    }


def by_group(rows: list[dict], figures) -> dict:
    """`figures(rows)` of all `rows` ("overall") and of each group of every grouping."""
    entry = {"overall": figures(rows)}
    for grouping in GROUPINGS:
        groups = defaultdict(list)
        for row in rows:
            groups[str(row.get(grouping) or "unknown")].append(row)
        entry[grouping] = {name: figures(groups[name]) for name in sorted(groups)}
    return entry


# ------------------------------------------------------------------------------------ summary


def _tally(rows: list[dict], scoring: str) -> dict:
    correct = sum(1 for row in rows if is_correct(row, scoring))
    return {
        "items": len(rows),
        "correct": correct,
        "accuracy": correct / len(rows) if rows else None,
        "format_kept": sum(1 for row in rows if row["format_kept"]) / len(rows) if rows else None,
    }


def mean(values: list[float | None]) -> float | None:
    """The mean of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def agreement(by_pair: dict[tuple[str, str], dict], modes: tuple[str, ...]) -> dict | None:
    """How often the two modes give the same letter, over items where both gave a valid one."""
    if len(modes) != 2:
        return None
    first, second = modes
    ids = sorted({i for i, m in by_pair if m == first} & {i for i, m in by_pair if m == second})
    letters = [(by_pair[(i, first)]["prediction"], by_pair[(i, second)]["prediction"]) for i in ids]
    compared = [(a, b) for a, b in letters if a is not None and b is not None]
    same = sum(1 for a, b in compared if a == b)
    return {
        "modes": list(modes),
        "items": len(ids),  # items run in both modes
        "compared": len(compared),  # ... of which both modes gave a valid letter
        "same": same,
        "rate": same / len(compared) if compared else None,
    }


def summarise(
    results: Iterable[dict],
    modes: Iterable[str] = MODES,
    scoring: str = TAGGED,
    ids: set[str] | None = None,
) -> dict:
    """Accuracy per test file, modality, question type and overall, for each mode.

    `ids` restricts the summary to those items (the evaluator passes the items of the current run,
    so leftovers of another data selection in the same results file are not counted).
    """
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, not {scoring!r}")
    modes = tuple(modes)
    by_pair = selected(results, modes, ids)
    per_mode = {}
    for mode in modes:
        rows = [row for (_, m), row in sorted(by_pair.items()) if m == mode]
        entry = by_group(rows, lambda group: _tally(group, scoring))
        for grouping in GROUPINGS:
            entry[f"mean_over_{grouping}"] = mean([g["accuracy"] for g in entry[grouping].values()])
        per_mode[mode] = entry
    return {
        "scoring": scoring,
        "scoring_label": SCORING_LABELS[scoring],
        "modes": list(modes),
        "items": len({i for i, _ in by_pair}),
        "results": per_mode,
        "agreement": agreement(by_pair, modes),
    }


# ------------------------------------------------------------------------------------- output


def csv_rows(summary: dict) -> list[dict]:
    """Long-form rows: grouping, group, mode, items, correct, accuracy, format_kept."""
    rows = []
    for mode, entry in summary["results"].items():
        overall = entry["overall"]
        rows.append(
            {"grouping": "overall", "group": "all items (sample-weighted)", "mode": mode, **overall}
        )
        for grouping in GROUPINGS:
            mean = entry[f"mean_over_{grouping}"]
            label = f"mean over {GROUPING_PLURALS[grouping]}"
            rows.append({"grouping": "overall", "group": label, "mode": mode, "accuracy": mean})
        for grouping in GROUPINGS:
            for name, tally in entry[grouping].items():
                rows.append({"grouping": grouping, "group": name, "mode": mode, **tally})
    return rows


def write_summary(
    summary: dict, folder, extra: dict | None = None, stem: str | None = None
) -> tuple[Path, Path]:
    """summary.json (with `extra`, e.g. the model and skipped records) and summary.csv; `stem`
    names them instead (default: the scoring's, `SUMMARY_STEMS`)."""
    folder = Path(folder)
    stem = stem or SUMMARY_STEMS[summary["scoring"]]
    json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
    json_path.write_text(json.dumps({**summary, **(extra or {})}, indent=1) + "\n", "utf-8")
    fields = ["grouping", "group", "mode", "items", "correct", "accuracy", "format_kept"]
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in csv_rows(summary):
            writer.writerow({k: csv_value(row.get(k)) for k in fields})
    return json_path, csv_path


def csv_value(value):
    """A CSV cell: blank for None, floats to 6 decimals."""
    if value is None:
        return ""
    return round(value, 6) if isinstance(value, float) else value


def percent(value: float | None) -> str:
    """A share as a percentage with one decimal, "-" when there is none."""
    return "-" if value is None else f"{100 * value:.1f}"


def format_table(summary: dict) -> str:
    """A plain-text table: one column pair (accuracy %, items) per mode."""
    modes = summary["modes"]
    results = summary["results"]
    width = max([34] + [len(n) + 2 for e in results.values() for g in GROUPINGS for n in e[g]])
    lines = [f"Accuracy (%), scoring: {summary['scoring_label']}"]
    if summary.get("prompts"):
        lines.append(f"Prompts: {summary['prompts']}")
    lines.append(" " * width + "".join(f"{m:>14}{'n':>7}" for m in modes))

    def line(label: str, cells: list[tuple[float | None, int | str]]) -> str:
        return f"{label:<{width}}" + "".join(f"{percent(a):>14}{n!s:>7}" for a, n in cells)

    for grouping in GROUPINGS:
        names = sorted({n for e in results.values() for n in e[grouping]})
        lines.append(f"By {GROUPING_LABELS[grouping]}")
        for name in names:
            tallies = [results[m][grouping].get(name, {}) for m in modes]
            lines.append(
                line(f"  {name}", [(t.get("accuracy"), t.get("items", 0)) for t in tallies])
            )
    overall = [results[m]["overall"] for m in modes]
    lines.append(line("Overall, sample-weighted", [(t["accuracy"], t["items"]) for t in overall]))
    for grouping in GROUPINGS:
        label = f"Overall, mean over {GROUPING_PLURALS[grouping]}"
        means = [results[m][f"mean_over_{grouping}"] for m in modes]
        counts = [len(results[m][grouping]) for m in modes]
        lines.append(line(label, list(zip(means, counts, strict=True))))
    lines.append(line("Format kept", [(t["format_kept"], t["items"]) for t in overall]))
    lines.append("n: items; for a mean over groups, the number of groups")
    agree = summary.get("agreement")
    if agree:
        lines.append(
            f"Modes agree on {agree['same']} of {agree['compared']} items where both gave a letter "
            f"({percent(agree['rate'])}%; {agree['items']} items run in both modes)"
        )
    return "\n".join(lines)
