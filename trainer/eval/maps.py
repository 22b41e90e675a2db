"""Pointing on phantoms: `python -m trainer eval --maps` scores where each mode looked.

For every evaluated (item, mode) whose record says where its finding was drawn (the `regions`
field `python -m trainer synth` writes, `trainer.phantoms.regions`) and whose answer has a letter,
the answer's relevance map is computed as the app computes it (`medr1_demo.policy.relevance`:
gradient x input on the visual tokens, the mode's own output as context) and compared with the
finding's mask, both at the map's resolution (one cell per merged visual token):

- **pointing**: whether the map's peak cell lies in the finding; a cell counts by the share of
  it the mask covers (tied peaks are averaged). For an item, 1 when the peak is wholly inside.
- **mass**: the share of the map's relevance that falls in the finding.
- **chance**: the finding's area, the share of the picture it covers. A map that knows nothing
  (uniform, or a peak at a random cell) scores chance on both, on average; above chance means the
  answer was drawn from where the finding is.

Output beside the eval's files: `maps.jsonl` (one line per item and mode), `maps_summary.json`
and `maps_summary.csv` (per modality, question type and overall, per mode: items, pointing,
mass, chance), `maps.png` (example overlays, thinking | no-thinking, the finding framed in cyan).

    python -m trainer synth --out data/phantoms --n 800 --seed 7
    python -m trainer eval --model assets/demo-policy --data data/phantoms/test.json --maps
"""

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from medr1_demo.batch.runner import picture
from medr1_demo.protocol import MODES, build_prompt
from trainer.phantoms import regions as phantom_regions

RESOLUTION = 16  # mask pixels per map cell side when the finding is measured on the map's grid
EXAMPLES = 6  # items drawn in maps.png
OVERALL = "overall"


def coverage(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The share of each map cell (rows x columns) that the boolean `mask` covers."""
    rows, columns = shape
    size = (columns * RESOLUTION, rows * RESOLUTION)
    fine = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
    cells = np.asarray(fine, dtype=np.float64) / 255.0
    return cells.reshape(rows, RESOLUTION, columns, RESOLUTION).mean(axis=(1, 3))


def pointing(grid, mask: np.ndarray) -> dict:
    """{"pointing", "mass", "chance"} of one map (shares) against one finding mask."""
    values = np.asarray(grid, dtype=np.float64)
    covered = coverage(mask, values.shape)
    total = values.sum()
    shares = values / total if total > 0 else np.full(values.shape, 1 / values.size)
    peaks = np.isclose(shares, shares.max(), rtol=0, atol=1e-9)
    return {
        "pointing": float(covered[peaks].mean()),
        "mass": float((shares * covered).sum()),
        "chance": float(covered.mean()),
    }


def score_maps(engine, items, results: list[dict], prompts: str, progress: bool = True):
    """One line per (item, mode) with a finding and an answer letter: its map and its scores.

    The finding is the record's `regions` (read with the record, `medr1_demo.batch.sources`);
    each item's picture and mask are read once for all its modes."""
    from tqdm.auto import tqdm

    from medr1_demo.policy import relevance

    by_id = {item.id: item for item in items}
    by_item: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        item = by_id.get(result["id"])
        if item is not None and item.record.regions and result.get("prediction"):
            by_item[result["id"]].append(result)
    lines = []
    bar = tqdm(total=sum(map(len, by_item.values())), desc="maps", unit="map",
               disable=not progress)  # fmt: skip
    with bar:
        for key, answered in by_item.items():
            record = by_id[key].record
            found, image, mask = record.regions, picture(record.image), None
            for result in answered:
                bar.update(1)
                prompt = build_prompt(record.question, result["mode"], prompts)
                try:
                    shown = relevance.relevance_map(
                        engine, image, prompt, result["raw"], result["n_options"]
                    )
                except Exception as error:  # one map that fails is a line saying so
                    problem = f"map failed ({type(error).__name__})"
                    lines.append({**_labels(result), "problem": problem})
                    continue
                line = {**_labels(result), "finding": found.get("finding"),
                        "seconds": shown.seconds}  # fmt: skip
                if shown.grid is None:
                    lines.append({**line, "problem": shown.problem})
                    continue
                if mask is None:
                    mask = phantom_regions.region_mask(found, image.size)
                lines.append({**line, **pointing(shown.grid, mask), "grid": shown.grid,
                              "boxes": found.get("boxes", [])})  # fmt: skip
    return lines


def _labels(result: dict) -> dict:
    keys = ("id", "mode", "modality", "question_type", "prediction", "correct")
    return {key: result.get(key) for key in keys}


def summarise(lines: list[dict], modes=MODES) -> dict:
    """Per grouping (modality, question type, overall), group and mode: the mean scores."""
    groups: dict = defaultdict(list)
    for line in lines:
        if "pointing" not in line:
            continue
        for grouping, group in (
            ("modality", line["modality"]),
            ("question_type", line["question_type"]),
            (OVERALL, OVERALL),
        ):
            groups[(grouping, group, line["mode"])].append(line)
    table = []
    for (grouping, group, mode), members in sorted(groups.items()):
        if mode not in modes:
            continue
        table.append(
            {
                "grouping": grouping,
                "group": group,
                "mode": mode,
                "items": len(members),
                **{
                    key: round(float(np.mean([m[key] for m in members])), 4)
                    for key in ("pointing", "mass", "chance")
                },
            }
        )
    failed = sum(1 for line in lines if "pointing" not in line)
    return {"method": "gradient x input (visual tokens)", "rows": table, "without_map": failed}


def format_table(summary: dict) -> str:
    header = f"{'grouping':<14}{'group':<28}{'mode':<13}{'items':>6}{'pointing':>10}"
    header += f"{'mass':>8}{'chance':>8}"
    out = [header]
    for row in summary["rows"]:
        out.append(
            f"{row['grouping']:<14}{row['group'][:27]:<28}{row['mode']:<13}{row['items']:>6}"
            f"{100 * row['pointing']:>9.1f}%{100 * row['mass']:>7.1f}%{100 * row['chance']:>7.1f}%"
        )
    out.append(f"maps that could not be scored (no map, or it failed): {summary['without_map']}")
    return "\n".join(out)


def examples_figure(lines: list[dict], items, path: Path, count: int = EXAMPLES) -> bool:
    """A PNG of up to `count` items (different modalities first): the picture with each mode's
    map, the finding framed. False when there is nothing to draw."""
    from medr1_demo.overlay import heat_overlay

    scored = [line for line in lines if "grid" in line]
    by_item: dict = defaultdict(dict)
    for line in scored:
        by_item[line["id"]][line["mode"]] = line
    pairs = [(i, m) for i, m in by_item.items() if all(mode in m for mode in MODES)]
    chosen, seen = [], set()
    for key, modes in pairs:  # one per modality first, then the rest
        modality = next(iter(modes.values()))["modality"]
        if modality not in seen:
            chosen.append((key, modes))
            seen.add(modality)
    chosen = (chosen + [p for p in pairs if p not in chosen])[:count]
    if not chosen:
        return False
    records = {item.id: item.record for item in items}
    side, caption = 224, 18
    sheet = Image.new("RGB", (side * len(MODES), (side + caption) * len(chosen)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (key, modes) in enumerate(chosen):
        image = picture(records[key].image).resize((side, side), Image.Resampling.BICUBIC)
        for column, mode in enumerate(MODES):
            line = modes[mode]
            shown = heat_overlay(image, line["grid"], line["boxes"])
            top = row * (side + caption)
            sheet.paste(shown, (column * side, top + caption))
            text = (
                f"{line['modality'][:10]}, {mode}: "
                f"{line['prediction']} {'right' if line['correct'] else 'wrong'}, "
                f"{100 * line['mass']:.0f}% in"
            )
            draw.text((column * side + 3, top + 3), text, fill="black")
    sheet.save(path)
    return True


def run(engine, items, results, folder, prompts: str, modes=MODES, progress=True) -> dict:
    """Score the maps of `results`, write the files above into `folder`, print the table."""
    folder = Path(folder)
    lines = score_maps(engine, items, results, prompts, progress)
    with open(folder / "maps.jsonl", "w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    summary = summarise(lines, modes)
    (folder / "maps_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    with open(folder / "maps_summary.csv", "w", newline="", encoding="utf-8") as out:
        fields = ["grouping", "group", "mode", "items", "pointing", "mass", "chance"]
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(summary["rows"])
    examples_figure(lines, items, folder / "maps.png")
    print(format_table(summary))
    if not lines:
        print("eval --maps: no item records where its finding was drawn.", file=sys.stderr)
    return summary
