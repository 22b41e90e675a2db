"""`python -m trainer matrix`: the cross-generalisation matrix (trained on x tested on) as heatmaps.

    python -m trainer matrix \\
        --models CT=yuxianglai117/Med-R1:VQA_CT MRI=yuxianglai117/Med-R1:VQA_MRI \\
        --data "CT=Splits/modality/test/CT(Computed Tomography)_test.json" \\
               "MRI=Splits/modality/test/MR (Mag-netic Resonance Imaging)_test.json" \\
        --image_root /data/OmniMedVQA --out outputs/matrix
    python -m trainer matrix --config matrix.yaml     # keys as the flags; flags given win

`--models` and `--data` take NAME=SOURCE pairs (a checkpoint folder or `repo[:sub-folder]`; a
data file or folder). Each model is evaluated on every data entry with `trainer.eval.evaluate` (both
modes, one model load per checkpoint), in OUT/runs/<model name>/: a rerun reuses the finished
rows there, so an interrupted matrix resumes and a finished one is redrawn without a model.

`--prompts medr1-eval` asks with Med-R1's evaluation prompts, as its published heatmaps were
made; `--official_scoring qwen2-vl|qwen2.5-vl` scores as its scripts did (see `trainer.eval.evaluate`).

Writes, per mode, OUT/matrix_<mode>.csv and .png (rows: trained on, columns: tested on, cells:
accuracy in %, annotated), and with both modes OUT/matrix_difference.csv and .png (thinking minus
no-thinking, percentage points, diverging colours centred at 0); OUT/matrix.json holds it all.
"""

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

from medr1_demo.batch import scores
from medr1_demo.protocol import MODES, NO_THINKING, PROMPT_SETS, THINKING, TRAINING_PROMPTS
from trainer.eval import evaluate
from trainer.eval.run_folder import RunMismatch

CORNER = "trained on \\ tested on"


class MatrixError(Exception):
    """Bad input for the matrix; str(err) says why in plain words."""


def parse_pairs(values: list[str] | dict | None, what: str) -> dict[str, str]:
    """NAME=SOURCE strings (or a YAML mapping) -> {name: source}; a bare SOURCE is named by itself."""
    if isinstance(values, dict):
        return {str(k): str(v) for k, v in values.items()}
    pairs: dict[str, str] = {}
    for value in values or []:
        name, sep, source = str(value).partition("=")
        if not sep:  # a bare source: named by its sub-folder or file name
            source = name
            model, subfolder = evaluate.split_model(source) if what == "--models" else (name, None)
            name = subfolder or Path(model.rstrip("/")).stem
        if not name or not source:
            raise MatrixError(f"{what} entry {value!r} should be NAME=SOURCE.")
        if name in pairs:
            raise MatrixError(f"{what} name {name!r} is given twice; names must be unique.")
        pairs[name] = source
    return pairs


def folder_name(name: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", name).strip("_") or "model"


def cell(results: list[dict], column: str, mode: str, scoring: str) -> tuple[float, int]:
    """Accuracy (%) and item count of one data entry's results in one mode (NaN when none)."""
    rows = [
        r
        for r in results
        if r["mode"] == mode and (r["file"] == column or r["file"].startswith(column + "/"))
    ]
    if not rows:
        return math.nan, 0
    return 100 * sum(1 for r in rows if scores.is_correct(r, scoring)) / len(rows), len(rows)


# ------------------------------------------------------------------------------------- output


def write_csv(path: Path, rows: list[str], columns: list[str], values: list[list[float]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([CORNER, *columns])
        for name, line in zip(rows, values, strict=True):
            writer.writerow([name, *("" if math.isnan(v) else f"{v:.2f}" for v in line)])


def heatmap(
    path: Path,
    rows: list[str],
    columns: list[str],
    values: list[list[float]],
    title: str,
    *,
    diverging: bool = False,
) -> None:
    """An annotated heatmap PNG; a `diverging` one is centred at 0 (for differences)."""
    import numpy as np
    from matplotlib.colors import Normalize, TwoSlopeNorm
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas for PNG

    data = np.array(values, dtype=float).reshape(len(rows), len(columns))
    if diverging:
        finite = np.abs(data[np.isfinite(data)])
        span = max(float(finite.max()) if finite.size else 0.0, 1.0)
        norm, cmap, unit = (
            TwoSlopeNorm(vmin=-span, vcenter=0.0, vmax=span),
            "RdBu_r",
            "percentage points",
        )
    else:
        norm, cmap, unit = Normalize(vmin=0.0, vmax=100.0), "Blues", "accuracy (%)"
    figure = Figure(figsize=(1.0 + 1.1 * len(columns) + 1.5, 1.2 + 0.7 * len(rows) + 1.0))
    axes = figure.subplots()
    image = axes.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, aspect="auto")
    colours = image.cmap
    for i in range(len(rows)):
        for j in range(len(columns)):
            value = data[i, j]
            if math.isnan(value):
                axes.text(j, i, "-", ha="center", va="center", color="grey")
                continue
            r, g, b, _ = colours(norm(value))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # light text on dark cells
            text = f"{value:+.1f}" if diverging else f"{value:.1f}"
            axes.text(j, i, text, ha="center", va="center", color="white" if dark else "black")
    axes.set_xticks(range(len(columns)), labels=columns, rotation=40, ha="right")
    axes.set_yticks(range(len(rows)), labels=rows)
    axes.set_xlabel("Tested on")
    axes.set_ylabel("Trained on")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label=unit)
    figure.tight_layout()
    figure.savefig(path, dpi=120, format="png")


def draw(out: Path, models: list[str], data: list[str], table: dict, scoring: str) -> list[Path]:
    """CSV + PNG per mode, and the thinking-minus-no-thinking difference when both ran."""
    written = []
    for mode, values in table["accuracy"].items():
        csv_path, png = out / f"matrix_{mode}.csv", out / f"matrix_{mode}.png"
        write_csv(csv_path, models, data, values)
        heatmap(png, models, data, values, f"Accuracy (%), {mode}")
        written += [csv_path, png]
    if table.get("difference") is not None:
        csv_path, png = out / "matrix_difference.csv", out / "matrix_difference.png"
        write_csv(csv_path, models, data, table["difference"])
        title = "Thinking minus no-thinking (percentage points)"
        heatmap(png, models, data, table["difference"], title, diverging=True)
        written += [csv_path, png]
    plain = {
        "models": models,
        "data": data,
        "scoring": scoring,
        **{k: _nan_to_none(v) for k, v in table.items()},
    }
    (out / "matrix.json").write_text(json.dumps(plain, indent=1) + "\n", encoding="utf-8")
    return [*written, out / "matrix.json"]


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


# ------------------------------------------------------------------------------------ command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer matrix", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", help="YAML file with any of the options below")
    parser.add_argument("--models", nargs="+", help="NAME=checkpoint folder or repo[:sub-folder]")
    parser.add_argument("--data", nargs="+", help="NAME=test split file or folder")
    parser.add_argument("--out", help="output folder (default: outputs/matrix)")
    parser.add_argument("--image_root")
    parser.add_argument("--split", choices=["train", "test", "all"])
    parser.add_argument("--modes", nargs="+", choices=list(MODES))
    parser.add_argument("--limit", type=int, help="at most this many items from each data file")
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--max_new_tokens", type=int)
    parser.add_argument("--image_size", type=int)
    parser.add_argument("--device")
    parser.add_argument("--dtype")
    parser.add_argument("--prompts", choices=list(PROMPT_SETS))
    parser.add_argument(
        "--official_scoring", nargs="?", const="qwen2-vl", choices=list(scores.OFFICIAL_RULES)
    )
    parser.add_argument("--quiet", action="store_true", default=None)
    return parser


DEFAULTS = {
    "out": "outputs/matrix",
    "split": "test",
    "modes": None,  # every mode the prompt set has
    "prompts": TRAINING_PROMPTS,
    "batch_size": 64,
    "max_new_tokens": 256,
    "image_size": None,  # each policy's own training size (see trainer eval --image_size)
    "device": "auto",
    "dtype": "auto",
    "official_scoring": False,
    "quiet": False,
}


def options(argv: list[str]) -> argparse.Namespace:
    """Flags, then the YAML config's values for flags not given, then the defaults."""
    args = build_parser().parse_args(argv)
    config = {}
    if args.config:
        import yaml

        try:
            config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise MatrixError(f"Cannot read the config {args.config}: {err}") from err
        if not isinstance(config, dict):
            raise MatrixError(f"{args.config} should hold a mapping of options.")
        unknown = sorted(set(config) - set(vars(args)) - {"config"})
        if unknown:
            raise MatrixError(f"Unknown option(s) in {args.config}: {', '.join(unknown)}.")
    for key, value in vars(args).items():
        if value is None:
            setattr(args, key, config.get(key, DEFAULTS.get(key)))
    return args


def main(argv: list[str]) -> int:
    from medr1_demo.policy.checkpoint import PolicyLoadError
    from medr1_demo.policy.engine import GenerationError

    try:
        args = options(argv)
        evaluate.check_numbers(args)
        models, data = parse_pairs(args.models, "--models"), parse_pairs(args.data, "--data")
        if not models or not data:
            raise MatrixError("Give at least one --models NAME=SOURCE and one --data NAME=FILE.")
        items, problems = evaluate.collect_items(
            list(data.values()),
            args.image_root,
            names=list(data),
            limit=args.limit,
            split=args.split,
        )
        for problem in problems:
            print(f"skipped {problem}", file=sys.stderr)
        if not items:
            raise MatrixError("No usable records in the --data entries.")
        try:
            scoring = scores.scoring_for(args.official_scoring)
        except ValueError as err:
            raise MatrixError(str(err)) from None
        modes = evaluate.chosen_modes(args.modes, args.prompts)
        settings = evaluate.Settings(
            modes,
            args.batch_size,
            args.max_new_tokens,
            args.image_size,
            not args.quiet,
            prompts=args.prompts,
        )
        out = Path(args.out)
        accuracy = {m: [] for m in modes}
        counts = {m: [] for m in modes}
        for name, source in models.items():
            model, subfolder = evaluate.split_model(source)
            run = {
                "model": evaluate.model_key(model),
                "subfolder": subfolder,
                "adapter": None,
                "max_new_tokens": args.max_new_tokens,
                "image_size": args.image_size,
                "prompts": args.prompts,
                "decoding": "greedy",
            }
            if not args.quiet:
                print(f"{name}: {source}", file=sys.stderr)
            load = evaluate.engine_loader(
                model, subfolder, None, args.device, args.dtype, args.image_size
            )
            folder = out / "runs" / folder_name(name)
            results, bad = evaluate.evaluate(items, folder, load, settings, run)
            evaluate.report(results, items, problems + bad, settings, folder, scoring, quiet=True)
            for mode in modes:
                cells = [cell(results, column, mode, scoring) for column in data]
                accuracy[mode].append([a for a, _ in cells])
                counts[mode].append([n for _, n in cells])
    except (MatrixError, evaluate.EvalError, RunMismatch, PolicyLoadError, GenerationError) as err:
        print(f"matrix: {err}", file=sys.stderr)
        return 1 if isinstance(err, GenerationError) else 2
    except KeyboardInterrupt:
        print("\nmatrix: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    table = {"accuracy": accuracy, "items": counts, "difference": None, "prompts": args.prompts}
    if THINKING in modes and NO_THINKING in modes:
        table["difference"] = [
            [t - n for t, n in zip(trow, nrow, strict=True)]
            for trow, nrow in zip(accuracy[THINKING], accuracy[NO_THINKING], strict=True)
        ]
    written = draw(out, list(models), list(data), table, scoring)
    for mode in modes:
        print(f"\n{mode}: accuracy (%), rows trained on, columns tested on")
        print(_text_matrix(list(models), list(data), accuracy[mode]))
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


def _text_matrix(rows: list[str], columns: list[str], values: list[list[float]]) -> str:
    width = max(len(r) for r in rows) + 2
    cols = [max(len(c), 6) + 2 for c in columns]
    lines = [" " * width + "".join(f"{c:>{w}}" for c, w in zip(columns, cols, strict=True))]
    for name, line in zip(rows, values, strict=True):
        cells = ("-" if math.isnan(v) else f"{v:.1f}" for v in line)
        lines.append(
            f"{name:<{width}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, cols, strict=True))
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
