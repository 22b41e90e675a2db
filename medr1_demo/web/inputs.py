"""The page's and the API's inputs, each checked in the handler with a plain sentence when wrong.

Gradio's components check little on the API (a value outside a dropdown's choices fails with
Gradio's own message, a number box turns "abc" into a traceback), so the API's inputs arrive as
plain JSON and every parameter is read here, whatever its type. A refusal is a `RequestError`: its
message is for the person asking (it may quote a few characters of what they sent, never more);
its `reason` is a short code, the only thing the log records.

    question = read_question(value, limit=2000)   # RequestError("Type a question ...")
"""

import json

from medr1_demo.policy.trust import read_checks as parse_checks
from medr1_demo.protocol import MODALITIES, MODES, Question, QuestionError, split_question
from medr1_demo.scan.windowing import AUTO, WINDOW_CHOICES
from medr1_demo.web import aids

SHOWN = 40  # characters of a client's value a message may quote


class RequestError(ValueError):
    """A request that cannot be answered; str(err) is a sentence for the person asking."""

    def __init__(self, message: str, reason: str = "bad_request"):
        super().__init__(message)
        self.reason = reason


def _shown(value) -> str:
    text = str(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


def read_scan(value) -> str:
    """The upload's server path from a File input (a path, or Gradio's {"path": ...} dict)."""
    if isinstance(value, dict):
        value = value.get("path")
    if value is None or value == "":
        raise RequestError("Upload a scan first (DICOM, PNG or JPEG).", "no_scan")
    if not isinstance(value, str):
        raise RequestError("The scan must be an uploaded file.", "scan_type")
    return value


def read_question_text(value, limit: int) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise RequestError("The question must be text.", "question_type")
    if len(value) > limit:
        raise RequestError(
            f"The question is {len(value)} characters long; the limit is {limit}.", "question_long"
        )
    return value.strip()


def read_options(value, limit: int | None = None) -> list[str]:
    """Options from the page (one per line) or the API (a list, or a JSON list as text)."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise RequestError(
                    "The options look like JSON but do not parse.", "options"
                ) from None
        else:
            value = text.splitlines()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise RequestError("Options must be a list of texts, one per option.", "options_type")
    options = [v.strip() for v in value if v.strip()]
    if limit is not None and any(len(o) > limit for o in options):
        raise RequestError(f"Each option must be at most {limit} characters.", "option_long")
    return options


def read_question(question, options, question_limit: int, option_limit: int) -> Question:
    """The checked question; an OmniMedVQA string with its options works without `options`."""
    text = read_question_text(question, question_limit)
    listed = read_options(options, option_limit)
    if not text:
        raise RequestError("Type a question about the scan.", "no_question")
    if not listed:
        try:  # an OmniMedVQA question pasted with its options
            text, listed = split_question(text)
        except QuestionError:
            raise RequestError("Give 2 to 8 answer options, one per line.", "no_options") from None
        listed = read_options(listed, option_limit)
    try:
        return Question.ask(text, listed)
    except QuestionError as error:
        raise RequestError(str(error), "options") from None


def read_modes(value) -> tuple[str, ...]:
    """Modes as a list (or one mode as text); None means both."""
    if value is None:
        return MODES
    modes = [value] if isinstance(value, str) else value
    if not isinstance(modes, list | tuple) or not all(isinstance(m, str) for m in modes):
        raise RequestError(
            'Modes must be a list such as ["thinking", "no-thinking"].', "modes_type"
        )
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise RequestError(
            f"Unknown mode '{_shown(unknown[0])}'; use {' and/or '.join(MODES)}.", "mode"
        )
    if not modes:
        raise RequestError("Choose at least one mode: thinking, no-thinking or both.", "no_mode")
    return tuple(m for m in MODES if m in modes)


def read_whole(value, message: str, reason: str) -> int | None:
    """A whole number (also as text or a whole float); None or "" for none; else RequestError."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        value = "not a number"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise RequestError(message, reason)
    return value


def read_frame(value) -> int | None:
    """A 0-based frame number (a whole number, also as text); None or "" for the middle one."""
    return read_whole(value, "The frame must be a whole number (0 is the first frame).", "frame")


def read_slice(frame, slice_) -> int | None:
    """The API's 0-based slice, given as `frame` or as `slice` (the same thing, by either name)."""
    index = read_frame(frame)
    chosen = read_whole(slice_, "The slice must be a whole number (0 is the first slice).", "slice")
    if index is not None and chosen is not None and index != chosen:
        raise RequestError(
            "Give the slice once: `slice` and `frame` name the same thing, and they differ here.",
            "slice_twice",
        )
    return chosen if index is None else index


def read_modality(value) -> str | None:
    """The modality a person names for a picture (Auto routes by it); None: from the scan."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        named = {m.lower(): m for m in MODALITIES}
        found = named.get(value.strip().lower())
        if found is not None:
            return found
    raise RequestError(
        f"Unknown modality '{_shown(value)}'; choose one of: {', '.join(MODALITIES)}.", "modality"
    )


def read_window(value) -> str:
    """A window name of WINDOW_CHOICES (any case); None for "auto"."""
    if value is None or value == "":
        return AUTO
    choice = str(value).strip().lower() if isinstance(value, str) else None
    if choice not in WINDOW_CHOICES:
        listed = ", ".join(WINDOW_CHOICES)
        raise RequestError(f"Unknown window '{_shown(value)}'. Choose one of: {listed}.", "window")
    return choice


def read_checks(value) -> tuple[str, ...]:
    """The trust-aid controls as "mode:check" strings; None for the defaults."""
    if value is not None and (
        isinstance(value, str)
        or not isinstance(value, list | tuple)
        or not all(isinstance(c, str) for c in value)
    ):
        raise RequestError('Checks must be a list such as ["no-thinking:image"].', "checks_type")
    chosen = tuple(aids.chosen_checks(value))
    try:
        parse_checks(chosen)
    except ValueError:
        raise RequestError(
            f"Unknown check '{_shown(next(c for c in chosen if not _known(c)))}'; choose from "
            + ", ".join(v for _, v in aids.CHECK_CHOICES)
            + ".",
            "check",
        ) from None
    return chosen


def _known(check: str) -> bool:
    return check in {v for _, v in aids.CHECK_CHOICES}
