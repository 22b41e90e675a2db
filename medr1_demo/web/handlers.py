"""The page's and the API's event handlers: thin, torch-free, called directly by tests.

`Handlers` checks a request once (scan, question, options, modes) and turns the backend's
streamed answers into page HTML (`run`) or API JSON (`answer_api`, `stream_api`). Problems never
raise: the page shows a plain sentence, the API's `error` field holds it. Each upload is read once
(`medr1_demo.scan.cache`): showing it, moving its frame slider, changing its window and answering
about it all use the same opened file.
Privacy: the preview is inlined (no derived files are written), uploads are left to Gradio's
`delete_cache` (identical uploads share one cached file, so one request must not delete another's),
and logs hold only kinds, sizes and timings. `medr1_demo.web.layout` lays these out on the page.
"""

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from medr1_demo.config import AppConfig
from medr1_demo.policy.picture import as_trained
from medr1_demo.policy.trust import read_checks
from medr1_demo.protocol import (
    MODES,
    NO_THINKING,
    THINKING,
    Question,
    QuestionError,
    split_question,
)
from medr1_demo.results import Busy, ModeAnswer, ModelInfo
from medr1_demo.scan.cache import ScanCache
from medr1_demo.scan.types import ScanError
from medr1_demo.web import aids, render

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request that cannot be answered; str(err) is a sentence for the person asking."""


@dataclass(frozen=True)
class Backend:
    """What the page needs from a policy: its description and the two ways to ask it."""

    info: ModelInfo
    # engine.answer(image, question, options, modes=..., settings=...) -> mode -> answer
    answer: Callable[..., dict[str, ModeAnswer]]
    # the same arguments; yields growing partial answers, the last one final
    stream: Callable[..., Iterator[dict[str, ModeAnswer]]]
    notice: str | None = None  # shown above the model panel, e.g. for an untrained policy
    serving: str | None = None  # how requests share the model, in words (model panel)


@dataclass(frozen=True)
class Request:
    """A checked request: everything the model needs, and the safe facts about the scan."""

    image: object  # PIL image, exactly what the model sees
    question: Question
    modes: tuple[str, ...]
    scan: dict  # safe facts only: kind, frames, size; never metadata or the file name
    checks: tuple[str, ...] = ()  # the trust-aid controls asked, as "mode:check"


def read_options(value) -> list[str]:
    """Options from the page (one per line) or the API (a list, or a JSON list as text)."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise RequestError("The options look like JSON but do not parse.") from None
        else:
            return [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise RequestError("Options must be a list of texts, one per option.")
    return [v.strip() for v in value if v.strip()]


def _frame_index(frame) -> int | None:
    """A 0-based frame index, None for the scan's default (the middle frame)."""
    if frame is None or frame == "":
        return None
    try:
        return int(frame)
    except (TypeError, ValueError):
        raise RequestError("The frame must be a whole number (0 is the first frame).") from None


class Handlers:
    """The page's and the API's event handlers over one `Backend` and the app's limits."""

    def __init__(self, backend: Backend, config: AppConfig | None = None, scans=None):
        self.backend = backend
        self.config = config or AppConfig()
        self.scans = ScanCache() if scans is None else scans

    # ---------------------------------------------------------------------------------- scans

    def _scan(self, path, frame=None, window="auto"):
        if not path:
            raise RequestError("Upload a scan first (DICOM, PNG or JPEG).")
        if not Path(path).is_file():
            self.scans.forget(path)  # its memory goes with the file
            raise RequestError("The uploaded scan is no longer on the server; upload it again.")
        index = _frame_index(frame)
        started = time.perf_counter()
        try:
            scan = self.scans.open(path).picture(index, window or "auto")
        except ScanError as error:  # its reason is a short code, never header text
            logger.info("scan refused: %s", getattr(error, "reason", "unreadable"))
            raise RequestError(str(error)) from None
        except (OSError, ValueError) as error:  # anything the imaging module did not foresee
            logger.warning("scan unreadable: %s", type(error).__name__)
            raise RequestError(
                "This file could not be read as a scan (DICOM, PNG or JPEG)."
            ) from None
        logger.info(
            "scan kind=%s frames=%d bytes=%d load=%.2fs",
            scan.kind,
            scan.frame_count,
            Path(path).stat().st_size,
            time.perf_counter() - started,
        )
        return scan

    def _picture(self, scan):
        """The picture the policy sees: the scan at the size it trained on (policy.picture)."""
        return as_trained(scan.image, self.backend.info.image_size)

    @staticmethod
    def _scan_notes(scan) -> str:
        # Burned-in text may be a patient's name: its warning is shown as loudly as an error.
        return render.messages_html(
            scan.warnings, "error" if scan.burned_in_annotation else "warning"
        )

    def new_scan(self, path):
        """A file arrived (upload or example): preview, frame slider, window, metadata, notes."""
        if not path:
            hidden = gr.update(visible=False)
            return render.preview_html(None), hidden, hidden, "", ""
        try:
            scan = self._scan(path)
        except RequestError as error:
            hidden = gr.update(visible=False)
            return render.preview_html(None), hidden, hidden, "", render.message_html(str(error))
        # The slider counts frames from 1 as a viewer does; the imaging module counts from 0.
        frames = gr.update(
            visible=scan.frame_count > 1,
            minimum=1,
            maximum=max(scan.frame_count, 2),
            value=scan.frame_index + 1,
        )
        choices = list(scan.window_choices)
        windows = gr.update(visible=len(choices) > 1, choices=choices, value=choices[0])
        meta = render.metadata_table(scan.metadata)
        preview = render.preview_html(self._picture(scan))
        return preview, frames, windows, meta, self._scan_notes(scan)

    def show_scan(self, path, frame, window):
        """Frame (1-based slider) or window changed: the new preview and notes."""
        try:
            scan = self._scan(path, int(frame) - 1 if frame else None, window)
        except RequestError as error:
            return render.preview_html(None), render.message_html(str(error))
        return render.preview_html(self._picture(scan)), self._scan_notes(scan)

    # ------------------------------------------------------------------------------- question

    def split(self, question: str):
        """A pasted 'Question? A)x, B)y' -> the question box and one option per line."""
        try:
            text, options = split_question(question or "")
        except QuestionError as error:
            return gr.update(), gr.update(), render.message_html(str(error), "warning")
        return text, "\n".join(options), ""

    def asked(self, question: str, options_text: str) -> str:
        """How the question will be put to the model, updated as the person types."""
        try:
            return render.question_preview(Question.ask(question, read_options(options_text)))
        except (QuestionError, RequestError):
            return ""

    def _question(self, question, options_value) -> Question:
        server = self.config.server
        question = (question or "").strip()
        options = read_options(options_value)
        if not question:
            raise RequestError("Type a question about the scan.")
        if not options:
            try:  # an OmniMedVQA question pasted with its options
                question, options = split_question(question)
            except QuestionError:
                raise RequestError("Give 2 to 8 answer options, one per line.") from None
        if len(question) > server.max_question_chars:
            raise RequestError(
                f"The question is {len(question)} characters long; the limit is "
                f"{server.max_question_chars}."
            )
        if any(len(o) > server.max_option_chars for o in options):
            raise RequestError(f"Each option must be at most {server.max_option_chars} characters.")
        try:
            return Question.ask(question, options)
        except QuestionError as error:
            raise RequestError(str(error)) from None

    @staticmethod
    def _modes(modes) -> tuple[str, ...]:
        modes = [modes] if isinstance(modes, str) else list(modes or [])
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            raise RequestError(f"Unknown mode {unknown[0]!r}; use {' and/or '.join(MODES)}.")
        if not modes:
            raise RequestError("Choose at least one mode: thinking, no-thinking or both.")
        return tuple(m for m in MODES if m in modes)

    @staticmethod
    def _checks(checks) -> tuple[str, ...]:
        if checks is not None and (
            isinstance(checks, str) or not all(isinstance(c, str) for c in checks)
        ):
            raise RequestError('Checks must be a list such as ["no-thinking:image"].')
        chosen = tuple(aids.chosen_checks(checks))
        try:
            read_checks(chosen)
        except ValueError as error:
            raise RequestError(str(error)) from None
        return chosen

    def check_request(
        self, path, question, options, modes, frame=None, window="auto", checks=None
    ) -> Request:
        """Check everything once, before the model runs; RequestError says what to fix."""
        if not path:  # the first thing missing on an untouched page
            raise RequestError("Upload a scan first (DICOM, PNG or JPEG).")
        asked = self._question(question, options)
        chosen = self._modes(modes)
        controls = self._checks(checks)
        scan = self._scan(path, frame, window)
        picture = self._picture(scan)
        facts = {
            "kind": scan.kind,
            "frames": scan.frame_count,
            "frame": scan.frame_index,
            "window": scan.window,
            "width": picture.size[0],  # the picture the model sees
            "height": picture.size[1],
            "source_width": scan.image.size[0],  # the scan as read
            "source_height": scan.image.size[1],
            "warnings": list(scan.warnings),
            "burned_in_annotation": bool(scan.burned_in_annotation),
        }
        return Request(picture, asked, chosen, facts, controls)

    def _generate(self, request: Request, stream: bool = True) -> Iterator[dict[str, ModeAnswer]]:
        """The backend's answers (growing when `stream`), its failures turned into RequestError."""
        started = time.perf_counter()
        answers = {}
        call = self.backend.stream if stream else self.backend.answer
        try:
            result = call(
                request.image,
                request.question,
                modes=request.modes,
                settings=self.config.decoding,
                checks=list(request.checks),
            )
            for answers in result if stream else [result]:
                yield answers
        except QuestionError as error:
            raise RequestError(str(error)) from None
        except Busy as error:  # the shared batch's wait queue is full
            logger.info("request refused: busy")
            raise RequestError(str(error)) from None
        except Exception as error:  # the engine's GenerationError and anything below it
            logger.warning("generation failed: %s", type(error).__name__)
            raise RequestError(f"The model could not answer: {error}") from None
        tokens = {mode: a.tokens for mode, a in answers.items()}
        logger.info(
            "answered modes=%s tokens=%s in %.2fs",
            "+".join(request.modes),
            tokens,
            time.perf_counter() - started,
        )

    # ------------------------------------------------------------------------------------ page

    def run(self, path, frame, window, question, options_text, modes, checks=None):
        """The Run button: yields (status, think card, rationale, think raw, plain card, plain raw,
        agreement, asked) as both modes stream."""
        try:
            index = int(frame) - 1 if frame else None  # the slider counts from 1
            request = self.check_request(
                path, question, options_text, modes, index, window, checks or []
            )
        except RequestError as error:
            yield self._page(None, (), render.message_html(str(error)))
            return
        asked = render.question_preview(request.question)
        options = request.question.options
        yield self._page({}, request.modes, render.message_html("Answering…", "info"), asked)
        answers = {}
        try:
            for answers in self._generate(request):
                yield self._page(answers, request.modes, "", asked, options)
        except RequestError as error:
            status = render.message_html(str(error))
            yield self._page(answers, request.modes, status, asked, options)

    @staticmethod
    def _page(answers, modes, status, asked=None, options=()):
        def card(mode):
            if answers is None:
                return render.answer_card(mode, None)
            return render.answer_card(mode, answers.get(mode), mode in modes, options)

        think, plain = (answers or {}).get(THINKING), (answers or {}).get(NO_THINKING)
        return (
            status,
            card(THINKING),
            render.rationale_html(think),
            render.raw_output_html(think),
            card(NO_THINKING),
            render.raw_output_html(plain),
            render.agreement_html(answers) if set(modes) == set(MODES) else "",
            gr.update() if asked is None else asked,
        )

    # ------------------------------------------------------------------------------------- API

    def answer_api(
        self, scan, question, options, modes=MODES, frame=None, window="auto", checks=None
    ) -> dict:
        """`/answer`: one JSON result; `error` holds a plain sentence when it cannot answer.

        `checks`: the trust-aid controls as "mode:check" strings (None: the defaults)."""
        found = self._respond(scan, question, options, modes, frame, window, checks, stream=False)
        return list(found)[-1]

    def stream_api(
        self, scan, question, options, modes=MODES, frame=None, window="auto", checks=None
    ):
        """`/answer_stream`: JSON results growing with the answers; the last has done=True."""
        yield from self._respond(scan, question, options, modes, frame, window, checks, True)

    def _respond(self, scan, question, options, modes, frame, window, checks, stream: bool):
        info = self.backend.info
        try:
            request = self.check_request(scan, question, options, modes, frame, window, checks)
            for answers in self._generate(request, stream):
                yield render.api_payload(
                    info, answers=answers, scan=request.scan, question=request.question
                )
        except RequestError as error:
            yield render.api_payload(info, error=str(error))
