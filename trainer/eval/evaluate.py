"""`python -m trainer eval`: accuracy of a Med-R1 policy on split files, both modes, resumable.

    python -m trainer eval --model yuxianglai117/Med-R1:VQA_CT \\
        --data Splits/modality/test --image_root /data/OmniMedVQA --out outputs/eval/VQA_CT
    python -m trainer eval --model outputs/grpo-demo --data data/phantoms/test.json --limit 50

Every (item, mode) row is asked through the shared engine and protocol (greedy, 256 new tokens by
default) and scored with `medr1_demo.batch.scores`. `--prompts` picks what is asked: `training` (the
default: the templates the policy was trained on, as the app asks), `medr1-eval` (Med-R1's
evaluation scripts' strings, to compare with published numbers) or `zero-shot` (its zero-shot
script's, no-thinking only). `--official_scoring qwen2-vl|qwen2.5-vl` scores as those released
scripts did (alone: qwen2-vl, its meaning before there were two). Both modes run in one pass over the data, with
continuous batching (`medr1_demo.policy.batching`): a finished answer leaves the batch and the next
row takes its place, so one long rationale does not hold 63 finished rows. Rows are asked by
mode, longest prompt first (little padding when rows join, and an out-of-memory error shows at
the start). Images are read a batch ahead while the model generates. `--plain_batches` runs
fixed batches instead, each until its longest row ends, as Med-R1's scripts do.

Output folder:
    results.jsonl   one line per (item, mode), written and flushed as rows finish; a rerun of
                    the same command skips the rows already there (a torn last line is dropped)
    run.json        the model, prompt set and settings the results were made with (a rerun must
                    match)
    summary.json / summary.csv   accuracy per test file, modality, question type, overall (also
                    printed as a table); summary.png draws it, one bar per mode (the Batch tab
                    draws the same); `--official_scoring` writes summary_official.* (qwen2-vl)
                    or summary_official_qwen2.5-vl.* instead
    With `--checks`:
    checks.json / checks.csv   the trust aids per test file, modality, question type, overall, per
                    mode: image-reliance rate (answers unchanged with the scan replaced by grey),
                    order consistency, mean probability of the chosen option when right and when
                    wrong, expected calibration error, rationale-answer agreement (thinking);
                    `medr1_demo.batch.trust_scores` says how each is computed
    reliability.csv, reliability-<mode>.png   the reliability diagram of each mode
Bad records (unreadable, missing image, ...) are reported as `file:index: reason` and skipped.

`--checks` asks each question as the app does (`PolicyEngine.answer_many` through a shared running
batch, training prompts), with the controls as extra rows of the same batch: bare `--checks` asks
both controls in every mode (in thinking mode each control costs a whole second rationale);
`--checks no-thinking:image no-thinking:order` asks only those. Option probabilities and the
rationale check need no extra row and come with any `--checks`.

This command is a thin layer over `medr1_demo.batch` (reading, the batch loop, scoring), which
the app's Batch tab runs too; it adds the resumable output folder and the printed table.
"""

import argparse
import functools
import sys
from dataclasses import asdict
from pathlib import Path

from medr1_demo.batch import outputs, scores, trust_scores
from medr1_demo.batch.runner import (  # the batch loop, shared with the app's Batch tab
    Item,
    Row,
    Settings,
    aided_lines,
    answer_rows,
    ask_items,
    missing_images,
    order_rows,
    plan_rows,
    request_sizes,
    token_lengths,
)
from medr1_demo.batch.sources import Problem, find_data_files, read_records
from medr1_demo.policy.trust import CONTROLS, read_checks
from medr1_demo.protocol import MODES, PROMPT_SETS, TRAINING_PROMPTS, prompt_modes
from trainer.eval import run_folder as runs

__all__ = ["Item", "Row", "Settings", "evaluate", "main"]


class EvalError(Exception):
    """The evaluation cannot go on; str(err) says why in plain words."""


# ---------------------------------------------------------------------------------------- items


def file_labels(files: list[str]) -> dict[str, str]:
    """Each file's shortest trailing path that no other file shares (usually its file name)."""
    parts = {f: Path(f).parts for f in files}
    labels = {}
    for f in files:
        for depth in range(1, len(parts[f]) + 1):
            label = "/".join(parts[f][-depth:])
            if not any(g != f and "/".join(parts[g][-depth:]) == label for g in files):
                break
        labels[f] = label
    return labels


def collect_items(
    data: list[str],
    image_root: str | None = None,
    *,
    names: list[str] | None = None,
    limit: int | None = None,
    split: str = "test",
) -> tuple[list[Item], list[Problem]]:
    """Items of the data files/folders (the first `limit` of each file) and the bad records.

    With `names` (one per entry of `data`), an entry's items are labelled by its name (plus the
    file's label when the entry is a folder of several files) instead of by file name.
    """
    from trainer.train.data import select

    entries = (
        [(None, list(data))]
        if names is None
        else [(n, [d]) for n, d in zip(names, data, strict=True)]
    )
    items: dict[str, Item] = {}  # by id: a file given twice is read once
    problems: list[Problem] = []
    for name, paths in entries:
        records, bad, files = read_records(paths, image_root, split=split)
        problems += bad
        labels = file_labels(files)
        if name is not None:
            labels = {f: name if len(files) == 1 else f"{name}/{labels[f]}" for f in files}
        kept: dict[str, int] = {}
        for record in select(records, split=split):
            file = _file_of(record.source, files)
            kept[file] = kept.get(file, 0) + 1
            if limit is None or kept[file] <= limit:
                label = labels[file] + record.source[len(file) :]  # keeps a dataset's "[test]"
                item = Item(f"{label}:{record.index}", label, record)
                items.setdefault(item.id, item)
    return list(items.values()), problems


def _file_of(source: str, files: list[str]) -> str:
    return max((f for f in files if source.startswith(f)), key=len, default=source)


def run_rows(engine, rows: list[Row], settings: Settings, writer) -> list[Problem]:
    """Generate and score `rows`, writing results as rows finish; the records whose image failed."""
    from tqdm.auto import tqdm

    problems: dict[str, Problem] = {}
    bar = tqdm(total=len(rows), desc="eval", unit="answer", disable=not settings.progress)
    with bar:
        for lines in answer_rows(engine, rows, settings, problems):
            writer.write(lines)
            bar.update(len(lines))
    return list(problems.values())


def run_checked(engine, rows: list[Row], settings: Settings, checks, done, writer):
    """Ask the items of `rows` as the app does, with the `checks` controls ("mode:name" each) as
    extra rows of a shared running batch; writes each item's missing modes' lines as it finishes.
    Returns the records that could not be asked."""
    from tqdm.auto import tqdm

    from medr1_demo.config import DecodingConfig
    from medr1_demo.policy import batching
    from medr1_demo.policy.scheduler import Scheduler

    tokens = settings.max_new_tokens  # one limit for every row, as the plain loop
    decoding = DecodingConfig(max_new_tokens_thinking=tokens, max_new_tokens_no_thinking=tokens)
    items = list({row.item.id: row.item for row in rows}.values())
    # groups of cases, each one request; enough in flight to fill the batch, one more waiting
    group, workers = request_sizes(settings.batch_size, settings.modes, checks, 2, 1)
    scheduler = None
    if batching.supported(engine.model):
        scheduler = Scheduler(engine, decoding, max_rows=settings.batch_size, queue_size=workers)
        engine.use_scheduler(scheduler.start())

    def answer_many(cases, **kwargs):
        return engine.answer_many(cases, settings=decoding, **kwargs)

    problems: list[Problem] = []
    bar = tqdm(total=len(items), desc="eval, checked", unit="item", disable=not settings.progress)
    try:
        asked = ask_items(answer_many, items, settings.modes, checks, workers, group)
        for item, result in asked:
            bar.update(1)
            if isinstance(result, str):
                problems.append(Problem(item.record.source, item.record.index, result))
                continue
            lines = aided_lines(item, result, settings.modes)
            writer.write([line for line in lines if (item.id, line["mode"]) not in done])
    finally:
        bar.close()
        if scheduler is not None:
            engine.use_scheduler(None)
            scheduler.stop()
    return problems


def evaluate(
    items: list[Item],
    folder,
    load_engine,
    settings: Settings,
    run: dict | None = None,
    overwrite: bool = False,
    checks: list[str] | None = None,
) -> tuple[list[dict], list[Problem]]:
    """Run every (item, mode) not yet in `folder`/results.jsonl; the results of `items`, problems.

    `load_engine()` is called only when some row is left to run (a finished run loads no model).
    `checks` ("mode:name" each, possibly none): ask as the app does, with those controls, and
    record probabilities and checks (`run_checked`); None: the plain loop (`answer_rows`).
    Raises `results.RunMismatch` when the folder holds results of another model or settings.
    """
    runs.start_run(folder, run or {}, overwrite)
    done = runs.read_done(folder)
    rows, problems = missing_images(plan_rows(items, settings.modes, done, settings.prompts))
    if rows:
        engine = load_engine()
        if getattr(engine, "info", None) is not None:
            runs.update_run(folder, {"info": asdict(engine.info)})
        with runs.ResultWriter(folder) as writer:
            if checks is None:
                rows = order_rows(rows, settings.modes, token_lengths(engine))
                problems += run_rows(engine, rows, settings, writer)
            else:
                problems += run_checked(engine, rows, settings, checks, done, writer)
    ids = {item.id for item in items}
    results = [r for r in runs.read_results(Path(folder) / runs.RESULTS) if r["id"] in ids]
    return results, problems


# ------------------------------------------------------------------------------------ command


def split_model(spec: str) -> tuple[str, str | None]:
    """`repo:sub-folder` or `folder:sub-folder` -> (model, sub-folder); an existing path stays whole."""
    if Path(spec).expanduser().exists() or ":" not in spec:
        return spec, None
    model, _, subfolder = spec.rpartition(":")
    return (model, subfolder) if model and subfolder else (spec, None)


def model_key(model: str) -> str:
    """How a model is named in run.json: an existing local path is made absolute."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def default_out(model: str | None, subfolder: str | None, adapter: str | None) -> Path:
    name = subfolder or Path(str(adapter or model).rstrip("/")).name or "model"
    return Path("outputs") / "eval" / name


def engine_loader(model, subfolder, adapter, device="auto", dtype="auto", image_size=None):
    @functools.cache  # one engine per command: the answers and the maps share it
    def load():
        from medr1_demo.policy.engine import PolicyEngine

        return PolicyEngine.load(
            model, subfolder=subfolder, adapter=adapter, device=device, dtype=dtype,
            image_size=image_size,
        )  # fmt: skip

    return load


def report(
    results: list[dict],
    items: list[Item],
    problems: list[Problem],
    settings: Settings,
    folder: Path,
    scoring: str,
    extra: dict | None = None,
    quiet: bool = False,
    checked: bool = False,
) -> dict:
    """Summarise, write summary.json/.csv, print the table and the skipped records; `checked`:
    the trust-aid report too (checks.json/.csv, reliability diagrams)."""
    summary = scores.summarise(results, settings.modes, scoring, ids={i.id for i in items})
    summary["prompts"] = settings.prompts
    skipped = {"count": len(problems), "records": [str(p) for p in problems]}
    scores.write_summary(summary, folder, {"skipped": skipped, **(extra or {})})
    if results:
        outputs.accuracy_figure(summary, Path(folder) / f"{scores.SUMMARY_STEMS[scoring]}.png")
    trust = None
    if checked and results:
        trust = trust_scores.summarise(results, settings.modes, ids={i.id for i in items})
        trust_scores.write_report(trust, folder)
        for mode, entry in trust["results"].items():
            ece = entry["overall"]["ece"]
            outputs.reliability_figure(entry["reliability"], mode, ece,
                                       Path(folder) / f"reliability-{mode}.png")  # fmt: skip
    if not quiet:
        for problem in problems[:50]:
            print(f"skipped {problem}", file=sys.stderr)
        if len(problems) > 50:
            print(f"... and {len(problems) - 50} more (all in summary.json)", file=sys.stderr)
        print(scores.format_table(summary))
        if trust is not None:
            print(trust_scores.format_table(trust))
        print(f"{len(problems)} record(s) skipped; results in {folder}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer eval",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model", help="checkpoint folder or hub repo id, optionally ':sub-folder'"
    )
    parser.add_argument("--subfolder", help="sub-folder of --model (same as MODEL:SUBFOLDER)")
    parser.add_argument("--adapter", help="LoRA adapter folder (its base model unless --model)")
    parser.add_argument(
        "--data", nargs="+", required=True, help="split JSON/JSONL files or folders"
    )
    parser.add_argument(
        "--image_root", help="folder image paths are relative to (default: each file's folder)"
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=["train", "test", "all"],
        help="side of the split for OmniMedVQA QA files (pre-split files: all items)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODES),
        help="modes to ask in (default: every mode the prompt set has)",
    )
    parser.add_argument(
        "--prompts",
        default=TRAINING_PROMPTS,
        choices=list(PROMPT_SETS),
        help="what to ask: the templates the policy was trained on (as the app asks), Med-R1's "
        "evaluation scripts' strings, or its zero-shot script's (no-thinking only)",
    )
    parser.add_argument("--limit", type=int, help="at most this many items from each data file")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument(
        "--image_size",
        type=int,
        default=None,
        help="square side pictures are resized to (default: the size the policy trained at, "
        "from its medr1_policy.json; 384 for the Med-R1 release; 0: keep)",
    )
    parser.add_argument("--out", help="output folder (default: outputs/eval/<model name>)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--official_scoring",
        nargs="?",
        const="qwen2-vl",
        choices=list(scores.OFFICIAL_RULES),
        help="score as Med-R1's released scripts for that model did (qwen2-vl no-thinking: raw "
        "output must equal the letter; qwen2.5-vl: the tag's letter when the output says "
        "'answer'); the flag alone means qwen2-vl; for reproducing published numbers only",
    )
    parser.add_argument(
        "--plain_batches",
        action="store_true",
        help="fixed batches, each until its longest row ends (no continuous batching)",
    )
    parser.add_argument(
        "--checks",
        nargs="*",
        metavar="MODE:CHECK",
        help="ask as the app does and report the trust aids (option probabilities, calibration, "
        "image-reliance and option-order controls, rationale agreement); bare: both controls in "
        f"every mode, or name them ({', '.join(f'{m}:{c}' for m in MODES for c in CONTROLS)})",
    )
    parser.add_argument(
        "--maps",
        action="store_true",
        help="also score each mode's relevance map against the finding regions phantom records "
        "carry (pointing per modality and question type; trainer.eval.maps)",
    )
    parser.add_argument("--overwrite", action="store_true", help="discard earlier results in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def chosen_modes(modes: list[str] | None, prompts: str) -> tuple[str, ...]:
    """The modes to run: those asked for, each of which the prompt set must have."""
    available = prompt_modes(prompts)
    if not modes:
        return available
    missing = [m for m in dict.fromkeys(modes) if m not in available]
    if missing:
        raise EvalError(
            f"The {prompts} prompts have no {' or '.join(missing)} variant; "
            f"use --modes {' '.join(available)}."
        )
    return tuple(dict.fromkeys(modes))


def chosen_checks(
    checks: list[str] | None, modes, prompts: str, plain_batches: bool = False
) -> list[str] | None:
    """The controls `--checks` asks for, as "mode:name" (bare: both in every mode); None: none."""
    if checks is None:
        return None
    if prompts != TRAINING_PROMPTS:
        raise EvalError("--checks asks as the app does, with the training prompts; drop --prompts.")
    if plain_batches:
        raise EvalError("--checks asks through a shared running batch; drop --plain_batches.")
    if not checks:
        return [f"{mode}:{name}" for mode in modes for name in CONTROLS]
    try:
        chosen = read_checks(checks)
    except ValueError as err:
        raise EvalError(str(err)) from None
    unasked = [m for m, names in chosen.items() if names and m not in modes]
    if unasked:
        raise EvalError(f"--checks names {', '.join(unasked)}, a mode not run (--modes).")
    return [f"{mode}:{name}" for mode, names in chosen.items() for name in names]


def check_numbers(args) -> None:
    for name in ("batch_size", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise EvalError(f"--{name} must be at least 1.")
    if args.limit is not None and args.limit < 1:
        raise EvalError("--limit must be at least 1.")
    if args.image_size is not None and args.image_size < 0:
        raise EvalError("--image_size must be 0 (keep the size) or a positive number of pixels.")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from medr1_demo.policy.checkpoint import PolicyLoadError
    from medr1_demo.policy.engine import GenerationError

    try:
        check_numbers(args)
        scoring = scores.scoring_for(args.official_scoring)
        modes = chosen_modes(args.modes, args.prompts)
        if not args.model and not args.adapter:
            raise EvalError(
                "Name a policy: --model FOLDER|REPO[:SUBFOLDER] and/or --adapter FOLDER."
            )
        model, subfolder = split_model(args.model) if args.model else (None, None)
        subfolder = args.subfolder or subfolder
        files, missing = find_data_files(args.data)
        if not files:
            raise EvalError("No data found: " + "; ".join(str(p) for p in missing))
        items, problems = collect_items(
            args.data, args.image_root, limit=args.limit, split=args.split
        )
        if not items:
            listed = "".join(f"\n  {p}" for p in problems[:20])
            raise EvalError(f"No usable records in {', '.join(args.data)}.{listed}")
        checks = chosen_checks(args.checks, modes, args.prompts, args.plain_batches)
        settings = Settings(
            modes,
            args.batch_size,
            args.max_new_tokens,
            args.image_size,
            progress=not args.quiet,
            continuous_batching=not args.plain_batches,
            prompts=args.prompts,
        )
        folder = Path(args.out) if args.out else default_out(model, subfolder, args.adapter)
        run = {
            "model": model_key(model) if model else None,
            "subfolder": subfolder,
            "adapter": model_key(args.adapter) if args.adapter else None,
            "max_new_tokens": args.max_new_tokens,
            "image_size": args.image_size,
            "prompts": args.prompts,
            "decoding": "greedy",
            "checks": checks,
            "data": list(args.data),
        }
        load = engine_loader(
            model, subfolder, args.adapter, args.device, args.dtype, args.image_size
        )
        results, bad = evaluate(items, folder, load, settings, run, args.overwrite, checks)
    except (EvalError, runs.RunMismatch, PolicyLoadError, GenerationError) as err:
        print(f"eval: {err}", file=sys.stderr)
        return 1 if isinstance(err, GenerationError) else 2
    except KeyboardInterrupt:
        print("\neval: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    report(results, items, problems + bad, settings, folder, scoring, {"run": run},
           checked=checks is not None)  # fmt: skip
    if args.maps and results:
        from trainer.eval import maps

        maps.run(load(), items, results, folder, args.prompts, modes, not args.quiet)
    if not results:
        print("eval: no item could be evaluated (see the skipped records above).", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
