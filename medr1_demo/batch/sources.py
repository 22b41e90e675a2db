"""Data files -> `Record`s: Med-R1 split JSON, OmniMedVQA QA JSON, JSON Lines, `save_to_disk` folders.

Used by `trainer.train.data` (which validates, filters and turns records into TRL rows); nothing here
opens an image. Two record schemas are recognised, record by record, in any of the file formats:

- Med-R1 split records `{"image", "problem", "solution"}` (also what `python -m trainer synth`
  writes, with `modality`, `question_type`, `rationale`, `id` besides). `problem` is kept verbatim.
- OmniMedVQA QA records `{"question", "option_A".."option_D", "gt_answer" (the option text),
  "image_path", "modality_type", "question_type", "question_id", "dataset"}`. These are not
  pre-split: `split_of` puts each question in train or test by a hash of its `question_id`
  (salted with a seed), so the split is the same on every machine and for any file order or filter.

A record that cannot be read becomes a `Problem` (`file:index: reason`), never an exception.
"""

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medr1_demo import protocol

DATA_SUFFIXES = (".json", ".jsonl")
UNKNOWN = "unknown"

# OmniMedVQA's modality names (and Med-R1's split file names) -> the 8 names the paper reports.
MODALITY_PATTERNS = {
    "CT": r"^ct\b|computed tomography",
    "MRI": r"^mri?\b|magnetic resonance|mag-netic",
    "X-Ray": r"x-?ray",
    "Ultrasound": r"ultrasound|^us$",
    "Dermoscopy": r"dermoscop",
    "Fundus Photography": r"fundus",
    "OCT": r"^oct\b|optical coherence",
    "Microscopy": r"microscop",
}
QUESTION_TYPES = protocol.QUESTION_TYPES
_SPLIT_SUFFIX = re.compile(r"[_\- ](train|test|val)$", re.I)


@dataclass(frozen=True)
class Record:
    """One multiple-choice question about one image, ready to validate."""

    source: str  # the data file, as given
    index: int  # position in that file (0-based; for JSON Lines the 0-based line)
    image: str  # resolved image path
    question: str  # the `{Question}` text: question then "A)..., B)..."
    solution: str  # Med-R1's "<answer> X </answer>"
    n_options: int
    modality: str
    question_type: str
    rationale: str | None = None  # a worked explanation, when the data has one (synthetic data)
    question_id: str | None = None  # OmniMedVQA's id: what the train/test split hashes
    split: str | None = None  # "train"/"test" for OmniMedVQA QA records, None when pre-split
    # Where a phantom's finding was drawn (`trainer.phantoms.regions`; its mask path resolved
    # as the image's), when the record has one; Med-R1's own loaders ignore the field.
    regions: dict | None = None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.index}"

    @property
    def letter(self) -> str:
        return protocol.solution_letter(self.solution)


@dataclass(frozen=True)
class Problem:
    """Why one record (or a whole file, index -1) cannot be used."""

    source: str
    index: int
    reason: str

    def __str__(self) -> str:
        where = self.source if self.index < 0 else f"{self.source}:{self.index}"
        return f"{where}: {self.reason}"


def canonical_modality(text: str | None) -> str | None:
    """'CT(Computed Tomography)', 'MR (Mag-netic ...', 'ultrasound' -> 'CT', 'MRI', 'Ultrasound'."""
    lowered = (text or "").strip().lower()
    for name, pattern in MODALITY_PATTERNS.items():
        if re.search(pattern, lowered):
            return name
    return None


def canonical_question_type(text: str | None) -> str | None:
    lowered = (text or "").strip().lower()
    for name in QUESTION_TYPES:
        if lowered == name.lower() or (
            lowered.startswith("other bio") and name.startswith("Other")
        ):
            return name
    return None


def labels_from_file_name(path: Path) -> tuple[str, str]:
    """Med-R1's split files name their modality or question type: `CT(Computed Tomography)_train.json`."""
    stem = _SPLIT_SUFFIX.sub("", path.stem)
    return canonical_modality(stem) or UNKNOWN, canonical_question_type(stem) or UNKNOWN


def split_of(question_id: str, test_fraction: float, seed: int = 0) -> str:
    """'test' for a stable `test_fraction` of question ids, else 'train' (salted SHA-256)."""
    digest = hashlib.sha256(f"{seed}:{question_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def find_data_files(paths: list[str]) -> tuple[list[Path], list[Problem]]:
    """Expand folders: a `save_to_disk` folder stays one source, others give their JSON/JSONL files."""
    found, problems = [], []
    for given in paths:
        path = Path(given).expanduser()
        if is_saved_dataset(path) or path.is_file():
            found.append(path)
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in DATA_SUFFIXES and p.is_file())
            files += sorted(p for p in path.iterdir() if p.is_dir() and is_saved_dataset(p))
            if not files:
                problems.append(
                    Problem(given, -1, "folder holds no .json/.jsonl files or datasets")
                )
            found.extend(files)
        else:
            problems.append(Problem(given, -1, "no such file or folder"))
    return found, problems


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def read_rows(
    path: Path, split: str = "train"
) -> Iterator[tuple[str, int, dict | None, str | None]]:
    """(source, index, row, error) for each record; `error` says why a row could not be read."""
    source = str(path)
    if is_saved_dataset(path):
        yield from _read_saved(path, split)
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        yield source, -1, None, f"cannot read the file ({err})"
        return
    if path.suffix == ".jsonl":
        for index, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                yield source, index, json.loads(line), None
            except json.JSONDecodeError as err:
                yield source, index, None, f"not valid JSON ({err.msg})"
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        yield source, -1, None, f"not valid JSON (line {err.lineno}: {err.msg})"
        return
    if not isinstance(data, list):
        yield source, -1, None, "expected a JSON list of records"
        return
    for index, row in enumerate(data):
        yield source, index, row, None


def _read_saved(path: Path, split: str) -> Iterator[tuple[str, int, dict | None, str | None]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as err:
        yield str(path), -1, None, f"cannot load the saved dataset ({err})"
        return
    if isinstance(loaded, datasets.DatasetDict):
        parts = {split: loaded[split]} if split in loaded else dict(loaded)
    else:
        parts = {None: loaded}
    for name, part in parts.items():
        source = str(path) if name is None else f"{path}[{name}]"
        image_feature = part.features.get("image") or part.features.get("image_path")
        if isinstance(image_feature, datasets.Image):
            yield source, -1, None, "images are stored inside the dataset; save image paths instead"
            continue
        for index, row in enumerate(part):
            yield source, index, row, None


def parse_row(
    row: object,
    source: str,
    index: int,
    root: Path,
    file_labels: tuple[str, str],
    test_fraction: float,
    split_seed: int,
) -> Record | Problem:
    """One raw row -> a Record, or a Problem saying what is missing or inconsistent."""
    if not isinstance(row, dict):
        return Problem(source, index, "record is not a JSON object")
    try:
        if "problem" in row and "solution" in row:
            return _parse_medr1(row, source, index, root, file_labels)
        if "question" in row and "gt_answer" in row:
            return _parse_omnimed(row, source, index, root, test_fraction, split_seed)
    except protocol.QuestionError as err:
        return Problem(source, index, str(err))
    keys = ", ".join(sorted(row)[:8]) or "none"
    return Problem(
        source,
        index,
        f"unknown record fields ({keys}); expected Med-R1 (image, problem, solution) or "
        "OmniMedVQA (question, option_A.., gt_answer, image_path)",
    )


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    return value.strip() if isinstance(value, str) else ""


def _image_path(value: str, root: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else root / path)


def _parse_medr1(row, source, index, root, file_labels) -> Record | Problem:
    problem, solution, image = _text(row, "problem"), _text(row, "solution"), _text(row, "image")
    if not image:
        return Problem(source, index, "record has no image path")
    if not problem:
        return Problem(source, index, "record has an empty problem")
    _, options = protocol.split_question(problem)
    letter = protocol.solution_letter(solution)
    if letter not in protocol.LETTERS[: len(options)]:
        listed = protocol.LETTERS[len(options) - 1]
        return Problem(
            source, index, f"answer {letter!r} is not one of the options A-{listed} in the problem"
        )
    return Record(
        source=source,
        index=index,
        image=_image_path(image, root),
        question=problem,
        solution=solution,
        n_options=len(options),
        modality=canonical_modality(_text(row, "modality")) or file_labels[0],
        question_type=canonical_question_type(_text(row, "question_type")) or file_labels[1],
        rationale=_text(row, "rationale") or None,
        question_id=_text(row, "id") or None,
        regions=_regions(row.get("regions"), root),
    )


def _regions(value, root: Path) -> dict | None:
    if not isinstance(value, dict) or not value:
        return None
    if isinstance(value.get("mask"), str):
        return {**value, "mask": _image_path(value["mask"], root)}
    return dict(value)


def _parse_omnimed(row, source, index, root, test_fraction, split_seed) -> Record | Problem:
    options = [
        _text(row, f"option_{letter}")
        for letter in protocol.LETTERS
        if row.get(f"option_{letter}") not in (None, "")
    ]
    question = protocol.format_question(_text(row, "question"), options)
    answer = _text(row, "gt_answer")
    matches = [i for i, option in enumerate(options) if option == answer]
    if not matches:
        return Problem(source, index, f"gt_answer {answer[:60]!r} is not one of the options")
    image = _text(row, "image_path")
    if not image:
        return Problem(source, index, "record has no image_path")
    question_id = str(row.get("question_id") or f"{image}|{question}")
    return Record(
        source=source,
        index=index,
        image=_image_path(image, root),
        question=question,
        solution=protocol.make_solution(protocol.LETTERS[matches[0]]),
        n_options=len(options),
        modality=canonical_modality(_text(row, "modality_type")) or UNKNOWN,
        question_type=canonical_question_type(_text(row, "question_type")) or UNKNOWN,
        question_id=question_id,
        split=split_of(question_id, test_fraction, split_seed),
    )


def read_records(
    paths: list[str],
    image_root: str | None = None,
    *,
    split: str = "train",
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> tuple[list[Record], list[Problem], list[str]]:
    """All records of `paths` (files or folders), the problems met, and the files read."""
    files, problems = find_data_files(paths)
    records: list[Record] = []
    for path in files:
        root = Path(image_root).expanduser() if image_root else path.parent
        labels = labels_from_file_name(path)
        for source, index, row, error in read_rows(path, split):
            if error is not None:
                problems.append(Problem(source, index, error))
                continue
            parsed = parse_row(row, source, index, root, labels, test_fraction, split_seed)
            (problems if isinstance(parsed, Problem) else records).append(parsed)
    return records, problems, [str(p) for p in files]
