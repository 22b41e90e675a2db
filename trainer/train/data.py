"""Training data for GRPO and SFT: read, validate every record up front, filter, split, build TRL rows.

`prepare_data(script_args)` is what `python -m trainer grpo|sft|validate` run before any model is
loaded. It reads the data files (`medr1_demo.batch.sources`), checks every record and raises `DataError`
listing each bad one as `file:index: reason` unless `skip_invalid` is set. The checks:

- the image exists and decodes. `image_check="quick"` (default) reads PNG files chunk by chunk
  and checks their CRCs (`PIL.Image.verify`, no inflate) and decodes JPEG files at 1/8 scale
  (`Image.draft`): measured on 512x512 scans, 0.4 ms a PNG and 1.3 ms a JPEG on one core against
  5.5 / 2.9 ms for a full decode, so OmniMedVQA's 89k images take one to two minutes (less on
  `check_workers` threads). Files PIL cannot identify (DICOM) go through
  `medr1_demo.scan.reader.load_scan`, the decoder training uses; `image_check="full"` sends every
  image through it.
- 2 to 8 options, the answer letter among them, and no duplicate (same image, same question).

`build_dataset(records, mode, image_size)` returns a `datasets.Dataset` of light columns (paths and
strings) with a transform that opens and resizes the image only when a row is read, so no image is
held in memory. Rows follow the shared protocol: `prompt` (conversational, `build_messages`),
`image` (one RGB PIL image), `solution`, `modality`, `question_type`, `mode` (the row's prompt
mode; GRPO passes it to the rewards) and for SFT `completion`. With `mode="both"` every record
gives two rows, one per Med-R1 template, so one policy learns to answer in both modes.

SFT rows come in two layouts (`sft_layout`): "project" asks with the GRPO prompt (image first) and
targets `<answer>X</answer>` (after `<think>rationale</think>\n` in thinking mode); "medr1" is
Med-R1's SFT (`src/r1-v/src/open_r1/sft.py`): its system prompt, the question text before the
image, and the target `f"{rationale}\n\n{solution}"` (the record's own `<answer> X </answer>`),
the solution alone when a record has no rationale. Med-R1's code wrote the literal text "None"
there for records without one; that is not copied (docs/training.md lists its quirks).

Pictures with an alpha channel are flattened as the official path does (`qwen_vl_utils` 0.0.10
`to_rgb`): RGBA onto white, other modes through `convert("RGB")`. The app's own reader puts
transparent margins on black, for display; training and evaluation use this loader.

    python -m trainer validate --data_files Splits/modality/train --image_root OmniMedVQA
"""

import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

from medr1_demo import protocol
from medr1_demo.batch.sources import (
    MODALITY_PATTERNS,
    QUESTION_TYPES,
    Problem,
    Record,
    canonical_modality,
    canonical_question_type,
    read_records,
)

# Train one policy on both templates: each record gives a thinking and a no-thinking row.
BOTH = "both"
TRAINING_MODES = (*protocol.MODES, BOTH)
PROJECT_LAYOUT, MEDR1_LAYOUT = "project", "medr1"
SFT_LAYOUTS = (PROJECT_LAYOUT, MEDR1_LAYOUT)


def row_modes(mode: str) -> tuple[str, ...]:
    """The prompt modes of the rows a record gives: ('thinking',), ('no-thinking',) or both."""
    if mode == BOTH:
        return protocol.MODES
    if mode not in protocol.MODES:
        raise ValueError(f"mode must be one of {TRAINING_MODES}, not {mode!r}")
    return (mode,)


class DataError(ValueError):
    """The data cannot be trained on as it is; `problems` lists every bad record."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


@dataclass
class PreparedData:
    """Validated records and what was dropped, for the trainer and the checkpoint metadata."""

    train: list[Record]
    eval: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    eval_files: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "train_records": len(self.train),
            "eval_records": len(self.eval),
            "skipped_records": len(self.problems),
            "modalities": dict(Counter(r.modality for r in self.train).most_common()),
            "question_types": dict(Counter(r.question_type for r in self.train).most_common()),
        }


# ------------------------------------------------------------------------------------ validation


def check_image(path: str, level: str = "quick") -> str | None:
    """None when the image at `path` is usable, else the reason in plain words."""
    if not os.path.isfile(path):
        return f"image not found: {path}"
    if level == "quick":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                if image.format == "PNG":
                    image.verify()  # walks every chunk and checks its CRC, without inflating
                else:
                    image.draft("RGB", (64, 64))  # JPEG: decode at reduced scale; others: no-op
                    image.load()
            return None
        except UnidentifiedImageError:
            pass  # not a picture format PIL knows (DICOM, ...): the scan reader decides below
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            return f"image does not decode ({err})"
    from medr1_demo.scan.reader import ScanError, load_scan

    try:
        load_scan(path)
    except ScanError as err:
        return f"image does not decode ({err})"
    except (OSError, ValueError) as err:
        return f"image does not decode ({err})"
    return None


def check_images(
    records: list[Record], level: str = "quick", workers: int = 8, progress: bool = True
) -> list[Problem]:
    """One Problem per record whose image is missing or broken (each distinct path checked once)."""
    from tqdm.auto import tqdm

    paths = sorted({r.image for r in records})
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda p: check_image(p, level), paths, chunksize=64)
        bar = tqdm(
            results, total=len(paths), desc="checking images", unit="img", disable=not progress
        )
        reasons = dict(zip(paths, bar, strict=True))
    return [Problem(r.source, r.index, reasons[r.image]) for r in records if reasons[r.image]]


def find_duplicates(records: list[Record]) -> list[Problem]:
    """The second and later copies of the same question about the same image."""
    first: dict[tuple[str, str], Record] = {}
    problems = []
    for record in records:
        key = (os.path.normpath(record.image), " ".join(record.question.split()))
        if key in first:
            problems.append(
                Problem(record.source, record.index, f"duplicate of {first[key].where}")
            )
        else:
            first[key] = record
    return problems


def check_options(records: list[Record]) -> list[Problem]:
    """2 to 8 options and the answer letter among them (parsing already refused most such rows)."""
    problems = []
    for record in records:
        if not protocol.MIN_OPTIONS <= record.n_options <= protocol.MAX_OPTIONS:
            reason = f"{record.n_options} options; a question needs 2 to {protocol.MAX_OPTIONS}"
            problems.append(Problem(record.source, record.index, reason))
        elif record.letter not in protocol.LETTERS[: record.n_options]:
            reason = f"answer {record.letter!r} is not one of the {record.n_options} options"
            problems.append(Problem(record.source, record.index, reason))
    return problems


def validate(
    records: list[Record], level: str = "quick", workers: int = 8, progress: bool = True
) -> list[Problem]:
    """Every problem with `records`, in file order."""
    problems = check_options(records) + find_duplicates(records)
    problems += check_images(records, level, workers, progress)
    return sort_problems(problems)


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.source, p.index))


def without(records: list[Record], problems: list[Problem]) -> list[Record]:
    bad = {(p.source, p.index) for p in problems}
    return [r for r in records if (r.source, r.index) not in bad]


# ------------------------------------------------------------------------------ filter and split


def select(
    records: list[Record],
    *,
    modalities: list[str] | None = None,
    question_types: list[str] | None = None,
    split: str = "train",
) -> list[Record]:
    """Keep the wanted modalities / question types, and one side of the OmniMedVQA split.

    Filters take OmniMedVQA's own names too ('CT(Computed Tomography)'), case-insensitively.
    Pre-split records (Med-R1 split files, JSONL without question ids) pass the split untouched.
    """
    wanted_m = {canonical_modality(m) for m in modalities or []}
    wanted_q = {canonical_question_type(q) for q in question_types or []}
    if None in wanted_m:
        raise DataError(f"unknown modality in {modalities}; known: {', '.join(MODALITY_PATTERNS)}")
    if None in wanted_q:
        raise DataError(
            f"unknown question type in {question_types}; known: {', '.join(QUESTION_TYPES)}"
        )
    kept = []
    for record in records:
        if wanted_m and record.modality not in wanted_m:
            continue
        if wanted_q and record.question_type not in wanted_q:
            continue
        if split != "all" and record.split is not None and record.split != split:
            continue
        kept.append(record)
    return kept


def with_rationale_target(records: list[Record]) -> list[Problem]:
    """Thinking-mode SFT learns the `<think>` text from the data: records without one are invalid."""
    reason = (
        "no rationale: thinking-mode SFT needs one (train no-thinking, or use data with rationales)"
    )
    return [Problem(r.source, r.index, reason) for r in records if not r.rationale]


def sft_target(record: Record, mode: str, layout: str = PROJECT_LAYOUT) -> str:
    """SFT's completion in `layout` (see the module docstring)."""
    if layout == MEDR1_LAYOUT:
        if mode == protocol.THINKING:
            return f"{record.rationale}\n\n{record.solution}"
        return record.solution
    answer = f"<answer>{record.letter}</answer>"
    if mode == protocol.THINKING:
        return f"<think>{record.rationale}</think>\n{answer}"
    return answer


# -------------------------------------------------------------------------------------- prepare


def _load(paths, args, what: str, split: str) -> tuple[list[Record], list[Problem], list[str]]:
    records, problems, files = read_records(
        paths,
        args.image_root,
        split=split,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
    )
    if not files:
        raise DataError(f"no {what} data found in {', '.join(paths)}", problems)
    records = select(
        records, modalities=args.modalities, question_types=args.question_types, split=split
    )
    return records, problems, files


def prepare_data(args, *, sft: bool = False, progress: bool = True) -> PreparedData:
    """Read, filter, validate; raise DataError unless every record is usable or skip_invalid."""
    if not args.data_files:
        raise DataError("no training data: set data_files in the recipe or pass --data_files")
    train, problems, files = _load(args.data_files, args, "training", args.split)
    if args.max_samples is not None:
        train = train[: args.max_samples]
    evaluation, eval_files = [], []
    if args.eval_data_files:
        # OmniMedVQA QA files given for evaluation are read from the held-out side of the split.
        eval_split = "test" if args.split == "train" else args.split
        evaluation, eval_problems, eval_files = _load(
            args.eval_data_files, args, "evaluation", eval_split
        )
        problems += eval_problems
    for part in filter(None, (train, evaluation)):  # duplicates are looked for within each part
        problems += validate(part, args.image_check, args.check_workers, progress)
        if sft and protocol.THINKING in row_modes(args.mode):
            problems += with_rationale_target(part)
    problems = sort_problems(problems)
    if problems and not args.skip_invalid:
        raise DataError(
            f"{len(problems)} invalid record(s); fix them or pass --skip_invalid to train without them",
            problems,
        )
    train, evaluation = without(train, problems), without(evaluation, problems)
    if not train:
        raise DataError("no usable training records left after filtering and validation", problems)
    return PreparedData(train, evaluation, problems, files, eval_files)


# -------------------------------------------------------------------------------------- dataset


@lru_cache(maxsize=64)
def open_image(path: str, size: int):
    """The RGB picture at `path`, resized to size x size (0: as is).

    GRPO's sampler reads each prompt `num_generations` times in a row; the small cache decodes it
    once (64 pictures of 384x384 are ~28 MB).
    """
    from medr1_demo.batch.runner import picture

    # Read as the scan reader reads it (RGBA onto white, as Med-R1's official path does), so
    # training, `trainer eval` and the app see the same picture.
    return picture(path, size)


@dataclass(frozen=True)
class RowBuilder:
    """The dataset transform: light columns in, protocol rows (with the opened image) out.

    A picklable class rather than a closure so data-loader worker processes can receive it.
    `mode` is the single mode of every row, unless the stored `mode` column gives each row's own.
    """

    mode: str
    image_size: int = 384
    sft: bool = False
    layout: str = PROJECT_LAYOUT

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        modes = batch.get("mode") or [self.mode] * len(batch["question"])
        if self.sft and self.layout == MEDR1_LAYOUT:
            prompts = [protocol.sft_messages(q) for q in batch["question"]]
        else:
            prompts = [
                protocol.build_messages(q, m) for q, m in zip(batch["question"], modes, strict=True)
            ]
        rows = {
            "prompt": prompts,
            "image": [open_image(path, self.image_size) for path in batch["image_path"]],
            "solution": list(batch["solution"]),
            "modality": list(batch["modality"]),
            "question_type": list(batch["question_type"]),
            "mode": list(modes),
        }
        if self.sft:
            rows["completion"] = [[{"role": "assistant", "content": t}] for t in batch["target"]]
        return rows


def build_dataset(
    records: list[Record],
    mode: str,
    image_size: int = 384,
    *,
    sft: bool = False,
    layout: str = PROJECT_LAYOUT,
):
    """A lazily decoded `datasets.Dataset` of TRL rows for `records` (SFT rows in `layout`).

    `mode="both"` gives two rows per record (thinking, then no-thinking) and stores each row's
    mode in a `mode` column; a single mode stores no such column (every row has that mode).
    """
    import datasets

    modes = row_modes(mode)
    pairs = [(r, m) for r in records for m in modes]
    columns = {
        "image_path": [r.image for r, _ in pairs],
        "question": [r.question for r, _ in pairs],
        "solution": [r.solution for r, _ in pairs],
        "modality": [r.modality for r, _ in pairs],
        "question_type": [r.question_type for r, _ in pairs],
    }
    if len(modes) > 1:
        columns["mode"] = [m for _, m in pairs]
    if sft:
        columns["target"] = [sft_target(r, m, layout) for r, m in pairs]
    dataset = datasets.Dataset.from_dict(columns)
    return dataset.with_transform(RowBuilder(modes[0], image_size, sft, layout))
