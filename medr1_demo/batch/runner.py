"""The batch loop: items -> (item, mode) rows -> answers -> scored result lines, as rows finish.

`python -m trainer eval` and the app's Batch tab both run questions through here, so an item is
asked and scored the same way in both. Two ways to ask:

- `answer_rows(engine, rows, settings, problems)`: the engine's `complete_many` (continuous
  batching over all rows; text only). Images are read a batch ahead while the model generates.
- `ask_items(answer_many, items, modes, checks, workers, group)`: groups of items through the
  engine's `answer_many` (each group one request, which a running scheduler batches with
  everyone else's rows), `workers` groups in flight; gives each mode's option probabilities and
  the trust-aid checks besides the text.

Both score with `scores.score` into one result line per (item, mode) (`result_line`). No torch
here: the engine is passed in.

    rows = order_rows(plan_rows(items, MODES, done=set()), MODES)
    for lines in answer_rows(engine, rows, Settings(), problems={}): ...
"""

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from medr1_demo.batch import scores
from medr1_demo.batch.sources import Problem, Record
from medr1_demo.policy.trust import CONTROLS
from medr1_demo.protocol import (
    MODES,
    TRAINING_PROMPTS,
    Question,
    QuestionError,
    build_prompt,
    split_question,
)
from medr1_demo.results import Busy
from medr1_demo.scan.types import ScanError


@dataclass(frozen=True)
class Item:
    """One question about one image; `id` is stable across runs (`file:index`, or `row N`).

    `name`: the image as the person named it (a path inside their ZIP), shown instead of a path.
    """

    id: str
    file: str
    record: Record
    name: str | None = None


@dataclass(frozen=True)
class Settings:
    """How to run: modes, batch size, token budget, image size (None: the policy's; 0: keep)."""

    modes: tuple[str, ...] = MODES
    batch_size: int = 64
    max_new_tokens: int = 256
    image_size: int | None = None
    progress: bool = True
    continuous_batching: bool = True
    prompts: str = TRAINING_PROMPTS  # the protocol prompt set rows are asked with


@dataclass(frozen=True)
class Row:
    item: Item
    mode: str
    prompt: str


# ---------------------------------------------------------------------------------------- rows


def plan_rows(
    items: list[Item], modes, done: set[tuple[str, str]], prompts: str = TRAINING_PROMPTS
) -> list[Row]:
    """The rows still to run, in the items' order, asked with the `prompts` set."""
    return [
        Row(item, mode, build_prompt(item.record.question, mode, prompts))
        for item in items
        for mode in modes
        if (item.id, mode) not in done
    ]


def order_rows(rows: list[Row], modes, length=None) -> list[Row]:
    """One mode after the other, longest prompt first within a mode: little padding when rows
    join, and an out-of-memory error shows at the start. `length` maps a list of prompts to
    their lengths (default: characters)."""
    rank = {mode: i for i, mode in enumerate(modes)}
    counts = (length or (lambda prompts: [len(p) for p in prompts]))([r.prompt for r in rows])
    lengths = dict(zip((id(r) for r in rows), counts, strict=True))
    return sorted(rows, key=lambda r: (rank[r.mode], -lengths[id(r)]))


def token_lengths(engine):
    """A prompts -> token counts function from the engine's tokenizer; None when it has none."""
    tokenizer = getattr(getattr(engine, "processor", None), "tokenizer", None)
    if tokenizer is None:
        return None
    return lambda prompts: [
        len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]
    ]


def picture(path: str, size: int = 0):
    """The picture at `path` as the scan reader reads it (RGBA flattened onto white, as Med-R1's
    official path does), resized to size x size (0: as is). The engine then makes it the
    picture the policy trained on (`medr1_demo.policy.picture`), exactly as the app does."""
    from medr1_demo.policy.picture import as_trained
    from medr1_demo.scan.reader import load_scan

    return as_trained(load_scan(path).image, size or None)


def load_images(rows: list[Row], read=picture) -> list:
    """Each row's image (one read per distinct file), or a plain-words reason it cannot be used."""
    loaded: dict[str, object] = {}
    for path in dict.fromkeys(row.item.record.image for row in rows):
        try:
            loaded[path] = read(path, 0)
        except (ScanError, OSError, ValueError) as err:
            loaded[path] = f"image does not decode ({err})"
    return [loaded[row.item.record.image] for row in rows]


def missing_images(rows: list[Row]) -> tuple[list[Row], list[Problem]]:
    """The rows whose image file exists, and one Problem per record whose image is missing."""
    exists = {path: os.path.isfile(path) for path in {row.item.record.image for row in rows}}
    problems = {
        row.item.id: Problem(
            row.item.record.source,
            row.item.record.index,
            f"image not found: {row.item.record.image}",
        )
        for row in rows
        if not exists[row.item.record.image]
    }
    return [row for row in rows if exists[row.item.record.image]], list(problems.values())


def result_line(item: Item, mode: str, text: str, tokens: int, prompts=TRAINING_PROMPTS) -> dict:
    """One result line: the item, its labels, the scoring and the raw completion.

    An item without a ground-truth answer (a case list without answers) has `answer` None and
    no scoring fields but its prediction.
    """
    record = item.record
    letter = record.letter if record.solution else None
    scored = scores.score(text, mode, letter or "", record.n_options, prompts)
    if letter is None:
        scored = {"prediction": scored["prediction"], "format_kept": scored["format_kept"],
                  "problem": scored["problem"]}  # fmt: skip
    return {
        "id": item.id,
        "file": item.file,
        "index": record.index,
        "mode": mode,
        "answer": letter,
        "n_options": record.n_options,
        "modality": record.modality,
        "question_type": record.question_type,
        **scored,
        "tokens": tokens,
        "raw": text,
    }


# ------------------------------------------------------------------------ continuous batching


def requests(rows: list[Row], settings: Settings, problems: dict[str, Problem], read=picture):
    """(image, prompt, limit) per row whose image reads, in order; images read a batch ahead.

    A row whose image cannot be used is recorded in `problems` and skipped; yields (row, request).
    """
    size = settings.batch_size
    chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load_images, chunks[0], read) if chunks else None
        for k, chunk in enumerate(chunks):
            images = pending.result()
            if k + 1 < len(chunks):  # read the next batch's images while this one generates
                pending = pool.submit(load_images, chunks[k + 1], read)
            for row, image in zip(chunk, images, strict=True):
                if isinstance(image, str):
                    record = row.item.record
                    problems[row.item.id] = Problem(record.source, record.index, image)
                else:
                    yield row, (image, row.prompt, settings.max_new_tokens)


def answer_rows(
    engine, rows: list[Row], settings: Settings, problems: dict[str, Problem], read=picture
) -> Iterator[list[dict]]:
    """Result lines of `rows` through `engine.complete_many`, a list each time some finish.

    Records whose image cannot be used are added to `problems` (by item id) and skipped.
    """
    asked: list[Row] = []  # request index -> row

    def ask():
        for row, request in requests(rows, settings, problems, read):
            asked.append(row)
            yield request

    answers = engine.complete_many(
        ask(), batch_size=settings.batch_size, continuous_batching=settings.continuous_batching
    )
    for finished in answers:
        yield [
            result_line(asked[i].item, asked[i].mode, text, n, settings.prompts)
            for i, text, n in finished
        ]


# ------------------------------------------------------------------------- item by item, aided


def request_sizes(max_rows: int, modes, checks, share: int, waiting: int) -> tuple[int, int]:
    """(cases per request, requests in flight) for `ask_items` beside a shared batch of `max_rows`
    rows: a request of at most 8 cases takes about 1/`share` of the batch, and enough requests are
    in flight to fill it with `waiting` more prepared to take their places. A case is a row per
    mode plus one per control ("mode:name" in `checks`) of those modes."""
    per_case = len(modes) + sum(1 for check in checks if check.split(":")[0] in modes)
    group = max(1, min(8, max_rows // (share * per_case)))
    return group, max(1, max_rows // (group * per_case)) + waiting


def ask_items(
    answer_many: Callable,
    items: list[Item],
    modes,
    checks=(),
    workers: int = 4,
    group: int = 8,
    read=picture,
) -> Iterator[tuple[Item, dict | str]]:
    """(item, {mode: ModeAnswer}) as items finish, or (item, reason) for one that cannot be asked.

    `answer_many([(image, Question), ...], modes=..., checks=...)` answers a group of cases as
    one request (the engine's `answer_many`): `group` items per request, `workers` requests in
    flight (a shared scheduler batches their rows with everyone else's); a full queue (`Busy`)
    is waited out. Closing the iterator stops the groups not yet started.
    """

    reading = threading.Lock()  # one group's pictures at a time: the first group starts first

    def prepared(chunk: list[Item]) -> tuple[list, list]:
        """(item, picture, Question) of the chunk's askable items; (item, reason) of the rest."""
        asked, done, pictures = [], [], {}  # a file named by several cases is read once
        for item in chunk:
            try:
                path = item.record.image
                image = pictures[path] if path in pictures else read(path, 0)
                pictures[path] = image
            except ScanError as err:  # a sentence for the person (never a path)
                done.append((item, f"image does not decode: {err}"))
                continue
            except Exception:  # noqa: BLE001 (a decoder's own message may hold a path)
                done.append((item, "image does not decode"))
                continue
            try:
                asked.append((item, image, Question.ask(*split_question(item.record.question))))
            except QuestionError as err:
                done.append((item, str(err)))
        return asked, done

    def one(chunk: list[Item]) -> list[tuple[Item, dict | str]]:
        with reading:
            asked, done = prepared(chunk)
        while asked:
            cases = [(image, question) for _, image, question in asked]
            try:
                answers = answer_many(cases, modes=modes, checks=list(checks))
            except Busy:
                time.sleep(0.05)
                continue
            except Exception as err:  # noqa: BLE001 (a generation error: this group only)
                answers = [f"could not be answered ({type(err).__name__})"] * len(asked)
            done += [(item, result) for (item, _, _), result in zip(asked, answers, strict=True)]
            break
        return done

    # longest question first, as `order_rows`: a group's rows join the batch with little padding
    items = sorted(items, key=lambda item: -len(item.record.question))
    chunks = (items[i : i + max(1, group)] for i in range(0, len(items), max(1, group)))
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="batch")
    running = {pool.submit(one, chunk) for chunk in _take(chunks, max(1, workers))}
    try:
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            running |= {pool.submit(one, chunk) for chunk in _take(chunks, len(done))}
            for future in done:
                yield from future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _take(iterator, n: int) -> list:
    return [item for _, item in zip(range(n), iterator, strict=False)]


def aided_lines(item: Item, answers: dict, modes) -> list[dict]:
    """One result line per mode of an item asked with `ask_items`, with each mode's option
    probability and the checks' verdicts besides the scoring of `result_line`."""
    lines = []
    for mode in modes:
        given = answers.get(mode)
        if given is None:
            continue
        line = result_line(item, mode, given.raw, given.tokens)
        line["probabilities"] = given.probabilities
        line["image"], line["question"] = item.name, item.record.question
        chosen = (given.probabilities or {}).get(line["prediction"])
        line["probability"] = None if chosen is None else round(chosen, 4)
        line["checks"] = {name: check.verdict for name, check in given.checks.items()}
        line["controls"] = {  # each control's own answer, for `trust_scores`
            name: {"letter": check.letter, "distance": check.distance}
            for name, check in given.checks.items()
            if name in CONTROLS
        }
        lines.append(line)
    return lines
