"""A person's batch upload -> items: a case list (JSON or CSV) and a ZIP of its images.

The case list is a Med-R1 split file (a JSON list of `{image, problem, solution}`), an
OmniMedVQA QA file (`question`, `option_A`.., `gt_answer`, `image_path`, ...), JSON Lines of
either, or a CSV with the columns `image, question, options, answer` (options separated by `|`
or one per line; `answer` a letter or the option's text, optional; `modality` and
`question_type` columns are read when present). Records are parsed by `batch.sources`, as
`trainer eval` parses them; an answer may be left out (the case is answered, not scored).

Images come from the ZIP only: an image path is looked up among the ZIP's members (exactly, or
as the end of one member's path), never opened as a server path. The ZIP is read by
`scan.archive.ZipSource` (its bomb, size and name limits); the members the list names are
written into `folder`, the upload's private folder, as `image-<n>`, and deleted with it. The
ZIP may hold the case list too. A record that cannot be used becomes `row N: reason` (N counts
from 1, as a spreadsheet's data rows); the others run.

    cases = read_cases(list_path, zip_path, folder, max_cases=200, max_bytes=500 << 20)
    cases.items, cases.problems   # runner.Item (name: the image's path in the ZIP), sentences

Run: `.venv/bin/python -m pytest tests/test_batch.py -q`.
"""

import csv
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from medr1_demo import protocol
from medr1_demo.batch.runner import Item
from medr1_demo.batch.sources import (
    Problem,
    Record,
    canonical_modality,
    canonical_question_type,
    labels_from_file_name,
    parse_row,
)
from medr1_demo.scan.archive import ZipSource
from medr1_demo.scan.types import ScanError

LIST_SUFFIXES = (".json", ".jsonl", ".csv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom")
CSV_COLUMNS = ("image", "question", "options", "answer")
LIST_NAME = "case list"


class CaseListError(ValueError):
    """The whole upload cannot be used; str(err) is the sentence to show."""


@dataclass
class Cases:
    """The usable items of an upload and, for each record left out, `row N: reason`."""

    items: list[Item] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rows: int = 0  # records in the list, usable or not


def read_cases(list_path, zip_path, folder, max_cases: int, max_bytes: int) -> Cases:
    """The items of a case list (or the one inside the ZIP) whose images are in the ZIP."""
    source = _open_zip(zip_path) if zip_path else None
    try:
        members = {source.name(i): i for i in range(len(source))} if source else {}
        text, list_name = _list_text(list_path, source, members)
        raw = _rows(text)
        if not raw:
            raise CaseListError("The case list holds no cases.")
        if len(raw) > max_cases:
            raise CaseListError(
                f"The case list holds {len(raw)} cases; this server runs at most {max_cases} in "
                "one batch. Split the list."
            )
        if source is None:
            raise CaseListError("Upload the images too: a ZIP holding the files the list names.")
        cases = Cases(rows=len(raw))
        labels = labels_from_file_name(PurePosixPath(list_name))
        written: dict[int, Path] = {}
        total = 0
        for index, row in enumerate(raw):
            parsed = _record(row, index, list_name, labels)
            if isinstance(parsed, Problem):
                cases.problems.append(f"row {index + 1}: {parsed.reason}")
                continue
            name, member, reason = _member(parsed.image, members)
            if reason:
                cases.problems.append(f"row {index + 1}: {reason}")
                continue
            if member not in written:
                total += source.size(member)
                if total > max_bytes:
                    raise CaseListError(
                        f"The images the list names come to more than {max_bytes >> 20} MB, "
                        "this server's limit for one batch. Split the list."
                    )
                written[member] = _write(source, member, name, Path(folder), len(written))
            record = replace(parsed, image=str(written[member]))
            cases.items.append(Item(f"row {index + 1}", list_name, record, name))
        return cases
    except ScanError as error:  # a member that inflates past the limits, a damaged stream
        raise CaseListError(str(error)) from None
    finally:
        if source is not None:
            source.close()


def _open_zip(path) -> ZipSource:
    try:
        return ZipSource(Path(path))
    except ScanError as error:
        raise CaseListError(str(error)) from None
    except OSError:
        raise CaseListError("The ZIP could not be read; upload it again.") from None


def _list_text(list_path, source, members: dict[str, int]) -> tuple[str, str]:
    """The case list's text and the name it is shown by."""
    if list_path:
        data, name = Path(list_path).read_bytes(), LIST_NAME
    else:
        lists = sorted((n for n in members if n.lower().endswith(LIST_SUFFIXES)),
                       key=lambda n: (n.count("/"), n))  # fmt: skip
        if not lists:
            raise CaseListError(
                "No case list: upload one (JSON or CSV), or put it in the ZIP beside the images."
            )
        data, name = source.read(members[lists[0]]), lists[0]
    try:
        return data.decode("utf-8-sig"), name
    except UnicodeDecodeError:
        raise CaseListError(
            "The case list is not UTF-8 text; save it as UTF-8 JSON or CSV."
        ) from None


def _rows(text: str) -> list:
    """The list's records: a JSON list, JSON Lines, or CSV rows as dicts."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise CaseListError(f"The case list is not valid JSON (line {err.lineno}).") from None
        return data
    if stripped.startswith("{"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    rows.append(f"line {number} is not valid JSON")
        return rows
    return _csv_rows(text)


def _csv_rows(text: str) -> list:
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = [str(name).strip().lower() for name in reader.fieldnames or ()]
        missing = [c for c in ("image", "question") if c not in header]
        if missing:
            raise CaseListError(
                "The case list is neither JSON nor a CSV with the columns "
                f"{', '.join(CSV_COLUMNS)} (missing: {', '.join(missing)})."
            )
        reader.fieldnames = header
        return [{k: v for k, v in row.items() if k is not None} | {"csv": True} for row in reader]
    except csv.Error:
        raise CaseListError("The case list could not be read as CSV.") from None


def _record(row, index: int, list_name: str, labels) -> Record | Problem:
    """One raw record -> a Record whose `image` is still the list's own (relative) path."""
    if isinstance(row, str):
        return Problem(list_name, index, row)
    if isinstance(row, dict) and row.get("csv"):
        row = _csv_record(row, index, list_name)
        if isinstance(row, Problem):
            return row
    elif isinstance(row, dict) and "problem" in row and "image" in row:
        row = {"solution": "", **row}  # the answer is optional on the page
    parsed = parse_row(row, list_name, index, Path(""), labels, 0.0, 0)
    if isinstance(parsed, Record) and parsed.solution and parsed.letter not in protocol.LETTERS:
        return Problem(list_name, index, f"answer {parsed.solution[:40]!r} is not a letter")
    return parsed


def _csv_record(row: dict, index: int, list_name: str) -> dict | Problem:
    """A CSV row -> a Med-R1 record (the answer, a letter or an option's text, made a letter)."""
    question = (row.get("question") or "").strip()
    options = [o.strip() for o in (row.get("options") or "").replace("\n", "|").split("|")]
    options = [o for o in options if o]
    try:
        if options:
            question = protocol.format_question(question, options)
        else:
            _, options = protocol.split_question(question)
    except protocol.QuestionError as err:
        return Problem(list_name, index, str(err))
    answer = (row.get("answer") or "").strip()
    solution = ""
    if answer:
        letters = protocol.LETTERS[: len(options)]
        if len(answer) == 1 and answer.upper() in letters:
            solution = protocol.make_solution(answer.upper())
        elif answer in options:
            solution = protocol.make_solution(letters[options.index(answer)])
        else:
            return Problem(list_name, index, f"answer {answer[:40]!r} is not one of the options")
    return {
        "image": (row.get("image") or "").strip(),
        "problem": question,
        "solution": solution,
        "modality": canonical_modality(row.get("modality")) or "",
        "question_type": canonical_question_type(row.get("question_type")) or "",
    }


def _member(image: str, members: dict[str, int]) -> tuple[str, int | None, str | None]:
    """(the image's path in the ZIP, its member, None) or (..., None, why it cannot be used)."""
    path = PurePosixPath(image.replace("\\", "/"))
    if path.is_absolute() or image.startswith("~") or ".." in path.parts:
        return image, None, "the image path must be a path inside the ZIP"
    name = "/".join(part for part in path.parts if part != ".")
    if name in members:
        return name, members[name], None
    ends = [m for m in members if m.endswith("/" + name)]
    if len(ends) == 1:
        return ends[0], members[ends[0]], None
    shown = name if len(name) <= 120 else name[:117] + "..."
    return name, None, f"image {shown} is not in the ZIP"


def _write(source: ZipSource, member: int, name: str, folder: Path, number: int) -> Path:
    """One member into the private folder, named by number (the person's name stays out)."""
    suffix = PurePosixPath(name).suffix.lower()
    path = folder / f"image-{number}{suffix if suffix in IMAGE_SUFFIXES else ''}"
    path.write_bytes(source.read(member))
    return path
