"""The page's and the API's event handlers: thin, torch-free, called directly by tests.

`Handlers` checks a request once (scan, question, options, modes, frame, window, checks: each by
`medr1_demo.web.inputs`, whatever its type) and turns the backend's streamed answers into page
HTML (`run`) or API JSON (`answer_api`, `stream_api`). Problems never raise: the page shows a
plain sentence, the API's `error` field holds it, and the log gets one line with a short reason
code (never the client's text, never a traceback).
Each upload is read once (`medr1_demo.scan.cache`) and then deleted from the server's disk
(`medr1_demo.web.uploads`): showing it, moving its frame slider, changing its window and
answering about it all use the copy in memory. The preview is inlined, so no derived file is
written. `medr1_demo.web.layout` lays these out on the page.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gradio as gr

from medr1_demo.config import AppConfig
from medr1_demo.policy.picture import as_trained
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
from medr1_demo.web import render
from medr1_demo.web.inputs import (
    RequestError,
    read_checks,
    read_frame,
    read_modes,
    read_options,
    read_question,
    read_question_text,
    read_scan,
    read_window,
)
from medr1_demo.web.uploads import discard

logger = logging.getLogger(__name__)


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


class Handlers:
    """The page's and the API's event handlers over one `Backend` and the app's limits."""

    def __init__(self, backend: Backend, config: AppConfig | None = None, scans=None, uploads=None):
        self.backend = backend
        self.config = config or AppConfig()
        max_age = self.config.server.cache_minutes * 60
        self.scans = ScanCache(max_age=max_age) if scans is None else scans
        self.uploads = uploads  # the private upload folder: files there are deleted once read

    @staticmethod
    def refused(error: RequestError) -> RequestError:
        """Log one line for a refused request (its reason code only) and hand the error on."""
        logger.info("request refused: %s", error.reason)
        return error

    # ---------------------------------------------------------------------------------- scans

    def _scan(self, path, frame=None, window="auto"):
        path, index, window = read_scan(path), read_frame(frame), read_window(window)
        started = time.perf_counter()
        try:
            opened = self.scans.open(path)
        except FileNotFoundError:
            raise RequestError(
                "The uploaded scan is no longer on the server; upload it again.", "scan_gone"
            ) from None
        except ScanError as error:  # its reason is a short code, never header text
            discard(path, self.uploads)
            raise RequestError(str(error), f"scan_{error.reason}") from None
        except (OSError, ValueError):  # anything the scan reader did not foresee
            discard(path, self.uploads)
            raise RequestError(
                "This file could not be read as a scan (DICOM, PNG or JPEG).", "scan_unreadable"
            ) from None
        discard(path, self.uploads)  # read into memory: the file on disk is no longer needed
        try:
            scan = opened.picture(index, window)
        except ScanError as error:
            raise RequestError(str(error), f"scan_{error.reason}") from None
        logger.info(
            "scan kind=%s frames=%d memory=%d load=%.2fs",
            scan.kind, scan.frame_count, opened.nbytes, time.perf_counter() - started,
        )  # fmt: skip
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
            message = render.message_html(str(self.refused(error)))
            return render.preview_html(None), hidden, hidden, "", message
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
            index = read_frame(frame)
            scan = self._scan(
                path, index - 1 if index else None, window
            )  # the slider counts from 1
        except RequestError as error:
            return render.preview_html(None), render.message_html(str(self.refused(error)))
        return render.preview_html(self._picture(scan)), self._scan_notes(scan)

    # ------------------------------------------------------------------------------- question

    def split(self, question: str):
        """A pasted 'Question? A)x, B)y' -> the question box and one option per line."""
        try:
            text = read_question_text(question, self.config.server.max_question_chars)
            text, options = split_question(text)
        except (QuestionError, RequestError) as error:
            return gr.update(), gr.update(), render.message_html(str(error), "warning")
        return text, "\n".join(options), ""

    def asked(self, question: str, options_text: str) -> str:
        """How the question will be put to the model, updated as the person types."""
        server = self.config.server
        try:
            listed = read_options(options_text, server.max_option_chars)
            text = read_question_text(question, server.max_question_chars)
            return render.question_preview(Question.ask(text, listed))
        except (QuestionError, RequestError):
            return ""

    def check_request(
        self, path, question, options, modes, frame=None, window="auto", checks=None
    ) -> Request:
        """Check everything once, before the model runs; RequestError says what to fix."""
        read_scan(path)  # the first thing missing on an untouched page
        server = self.config.server
        asked = read_question(question, options, server.max_question_chars, server.max_option_chars)
        chosen, controls = read_modes(modes), read_checks(checks)
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
            raise RequestError(str(error), "question") from None
        except Busy as error:  # the shared batch's wait queue is full
            raise RequestError(str(error), "busy") from None
        except Exception as error:  # the engine's GenerationError and anything below it
            logger.warning("generation failed: %s", type(error).__name__)
            raise RequestError(f"The model could not answer: {error}", "generation") from None
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
            index = read_frame(frame)
            request = self.check_request(
                path,
                question,
                options_text,
                modes,
                index - 1 if index else None,
                window,
                checks or [],
            )  # fmt: skip (the slider counts from 1)
        except RequestError as error:
            yield self._page(None, (), render.message_html(str(self.refused(error))))
            return
        asked = render.question_preview(request.question)
        options = request.question.options
        yield self._page({}, request.modes, render.message_html("Answering…", "info"), asked)
        answers = {}
        try:
            for answers in self._generate(request):
                yield self._page(answers, request.modes, "", asked, options)
        except RequestError as error:
            status = render.message_html(str(self.refused(error)))
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
        self, scan, question, options, modes=None, frame=None, window=None, checks=None
    ) -> dict:
        """`/answer`: one JSON result; `error` holds a plain sentence when it cannot answer.

        `checks`: the trust-aid controls as "mode:check" strings (None: the defaults)."""
        found = self._respond(scan, question, options, modes, frame, window, checks, stream=False)
        return list(found)[-1]

    def stream_api(self, scan, question, options, modes=None, frame=None, window=None, checks=None):
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
            yield render.api_payload(info, error=str(self.refused(error)))
