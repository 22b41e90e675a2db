"""The page's and the API's event handlers: thin, torch-free, called directly by tests.

`Handlers` checks a request once (scan, question, options, modes, slice, window, plane, series,
checks, policy, modality: each read by `medr1_demo.web.inputs` or `web.scans`, whatever its type),
picks the policy ("Auto" routes by the scan's modality, or the one the person names), and turns
the backend's streamed answers into page HTML (`run`) or API JSON (`answer_api`, `stream_api`);
with a second policy to compare, it asks that one too. Problems never raise: the page shows a plain sentence, the API's `error` field holds
it, and the log gets one line with a short reason code (never the client's text or a traceback).
Uploads are read once and deleted from disk (`web.scans`); the preview is inlined.
`medr1_demo.web.layout` lays these out on the page.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import gradio as gr

from medr1_demo.config import AppConfig
from medr1_demo.policy.catalogue import AUTO
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
from medr1_demo.web import render
from medr1_demo.web.inputs import (
    RequestError,
    read_checks,
    read_frame,
    read_modality,
    read_modes,
    read_options,
    read_question,
    read_question_text,
    read_slice,
)
from medr1_demo.web.scans import ScanViews, read_upload

logger = logging.getLogger(__name__)
FROM_SCAN = "from the scan"  # the modality hint's default: the DICOM header decides


@dataclass(frozen=True)
class Backend:
    """What the page needs from the policies: descriptions and the two ways to ask them.

    With a catalogue (`policies`), `answer` and `stream` take `policy=<name>`; without one they
    are a single engine's own methods.
    """

    info: ModelInfo  # the default policy's description
    # engine.answer(image, question, modes=..., settings=..., checks=...) -> mode -> answer
    answer: Callable[..., dict[str, ModeAnswer]]
    # the same arguments; yields growing partial answers, the last one final
    stream: Callable[..., Iterator[dict[str, ModeAnswer]]]
    notice: str | None = None  # shown above the model panel, e.g. for an untrained policy
    serving: str | None = None  # how requests share the model, in words (model panel)
    policies: tuple[str, ...] = ()  # the catalogue's names, the default first
    describe: Callable[[str], ModelInfo | None] | None = None  # a loaded policy's description
    route: Callable[[str | None], tuple[str, str]] | None = None  # modality -> (name, why)
    loaded: Callable[[str], bool] | None = None  # whether a policy is loaded already
    sizes: dict[str, int | None] = field(default_factory=dict)  # name -> picture side trained at
    notices: dict[str, str | None] = field(default_factory=dict)  # name -> its warning, if any
    # engine.answer_many([(image, Question), ...], modes=..., settings=..., checks=...): several
    # cases as one request (the Batch tab); None: one `answer` call per case
    answer_many: Callable[..., list[dict[str, ModeAnswer]]] | None = None


@dataclass(frozen=True)
class Request:
    """A checked request: everything the model needs, and the safe facts about the scan."""

    image: object  # PIL image, exactly what the answering policy sees
    source: object  # the scan's picture as read (another policy makes its own picture of it)
    question: Question
    modes: tuple[str, ...]
    scan: dict  # safe facts only: kind, slices, size; never metadata or a file name
    checks: tuple[str, ...] = ()  # the trust-aid controls asked, as "mode:check"
    policy: str | None = None  # the catalogue entry that answers (None: the only one)
    why: str | None = None  # why that one, when "Auto" chose it
    compare: str | None = None  # a second policy answering the same question


class Handlers:
    """The page's and the API's event handlers over one `Backend` and the app's limits."""

    def __init__(self, backend: Backend, config: AppConfig | None = None, scans=None, uploads=None,
                 api_root=None):  # fmt: skip
        """`uploads`: the private upload folder (files read are deleted from it); `api_root`:
        the folder every file the API names must lie in (None: any path, for direct callers)."""
        self.backend, self.api_root = backend, api_root
        self.config = config or AppConfig()
        max_age = self.config.server.cache_minutes * 60
        scans = ScanCache(max_age=max_age) if scans is None else scans
        self.views = ScanViews(scans, uploads, self._picture)
        self.scans = scans
        self.new_scan, self.show_scan = self.views.new_scan, self.views.show

    def _picture(self, image, policy=None):
        """The picture `policy` sees: the scan at the size it trained on (policy.picture)."""
        size = self.backend.info.image_size
        if policy in self.backend.sizes:
            size = self.backend.sizes[policy]
        return as_trained(image, size)

    @staticmethod
    def refused(error: RequestError) -> RequestError:
        """Log one line for a refused request (its reason code only) and hand the error on."""
        logger.info("request refused: %s", error.reason)
        return error

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

    # --------------------------------------------------------------------------- the request

    def _policy(self, value, scan, hint) -> tuple[str | None, str | None]:
        """(the policy that answers, why): a name, "Auto", or None for the default."""
        names = self.backend.policies
        if not names:
            if value not in (None, "", AUTO):
                raise RequestError("This server serves one policy; leave the policy out.", "policy")
            return None, None
        if value in (None, ""):
            return names[0], None
        if value == AUTO:
            modality = scan.metadata.get("Modality") if hint in (None, "", FROM_SCAN) else hint
            return self.backend.route(modality)
        if not isinstance(value, str) or value not in names:
            listed = ", ".join([AUTO, *names])
            raise RequestError(f"Unknown policy; choose one of: {listed}.", "policy")
        return value, None

    def check_request(self, path, question, options, modes, frame=None, window=None, checks=None,
                      plane=None, series=None, policy=None, hint=None, compare=None) -> Request:  # fmt: skip
        """Check everything once, before the model runs; RequestError says what to fix."""
        if not path:  # the first thing missing on an untouched page
            raise RequestError("Upload a scan first (DICOM, PNG or JPEG).", "no_scan")
        server = self.config.server
        asked = read_question(question, options, server.max_question_chars, server.max_option_chars)
        chosen, controls = read_modes(modes), read_checks(checks)
        scan, series, labels = self.views.read_request(path, frame, window, plane, series)
        name, why = self._policy(policy, scan, hint)
        second = None
        if compare not in (None, "", "none"):
            second, _ = self._policy(compare, scan, hint)
            second = None if second == name else second
        picture = self._picture(scan.image, name)
        facts = {
            "kind": scan.kind,
            "frames": scan.frame_count,
            "frame": scan.frame_index,
            "plane": scan.plane,
            "window": scan.window,
            "series": series,  # 0-based, of `series_list` (None: the upload holds one)
            "series_list": list(labels),  # safe facts only: modality, number, slices, plane
            "width": picture.size[0],  # the picture the model sees
            "height": picture.size[1],
            "source_width": scan.image.size[0],  # the scan as read
            "source_height": scan.image.size[1],
            "warnings": list(scan.warnings),
            "burned_in_annotation": bool(scan.burned_in_annotation),
        }
        return Request(picture, scan.image, asked, chosen, facts, controls, name, why, second)

    def _generate(self, request: Request, policy=None, stream: bool = True, maps: bool = False):
        """The backend's answers (growing when `stream`), its failures turned into RequestError.

        With `maps`, the last answers carry each mode's relevance map (asked only then: a
        backend without maps is never sent the argument)."""
        started = time.perf_counter()
        answers = {}
        call = self.backend.stream if stream else self.backend.answer
        extra = {"policy": policy} if self.backend.policies else {}
        if maps:
            extra["maps"] = True
        image = request.image if policy == request.policy else request.source
        try:
            result = call(image, request.question, modes=request.modes,
                          settings=self.config.decoding, checks=list(request.checks),
                          **extra)  # fmt: skip
            for answers in result if stream else [result]:
                yield answers
        except QuestionError as error:
            raise RequestError(str(error), "question") from None
        except Busy as error:  # the shared batch's wait queue is full
            raise RequestError(str(error), "busy") from None
        except Exception as error:  # a load or generation failure: one sentence, others go on
            logger.warning("generation failed: %s", type(error).__name__)
            raise RequestError(f"The model could not answer: {error}", "generation") from None
        tokens = {mode: a.tokens for mode, a in answers.items()}
        logger.info(
            "answered modes=%s tokens=%s in %.2fs",
            "+".join(request.modes), tokens, time.perf_counter() - started,
        )  # fmt: skip

    def _loading(self, name: str | None) -> str | None:
        """The sentence to show while a policy loads on first use, if it is not loaded."""
        if name and self.backend.loaded is not None and not self.backend.loaded(name):
            return f"Loading {name} (first use; this can take a minute)…"
        return None

    def _info(self, name: str | None) -> ModelInfo:
        found = self.backend.describe(name) if name and self.backend.describe else None
        return found or self.backend.info

    # ------------------------------------------------------------------------------------ page

    def run(self, path, frame, window, question, options_text, modes, checks=None, plane=None,
            series=None, policy=None, hint=None, compare=None, maps=False):  # fmt: skip
        """The Answer button: yields (status, think card, rationale, think raw, plain card,
        plain raw, agreement, asked, second policy, model panel, relevance maps) as the answers
        stream; `maps`: also show where each mode looked (after the answers)."""
        try:
            index = read_slider(frame)
            request = self.check_request(path, question, options_text, modes, index, window,
                                         checks or [], plane, series, policy, hint, compare)  # fmt: skip
        except RequestError as error:
            yield self._page(None, (), render.message_html(str(self.refused(error))))
            return
        asked = render.question_preview(request.question)
        options = request.question.options
        status = render.message_html(self._loading(request.policy) or "Answering…", "info")
        yield self._page({}, request.modes, status, asked, options)
        answers, second = {}, None
        maps = maps is True
        relevance = ""  # drawn from the first policy's answers, which the comparison leaves be
        try:
            for answers in self._generate(request, request.policy, maps=maps):
                relevance = render.relevance_html(answers, request.image, maps)
                yield self._page(answers, request.modes, "", asked, options, relevance=relevance)
            if request.compare:
                status = render.message_html(
                    self._loading(request.compare) or f"Asking {request.compare} too…", "info"
                )
                yield self._page(answers, request.modes, status, asked, options,
                                 relevance=relevance)  # fmt: skip
                for second in self._generate(request, request.compare):
                    shown = render.comparison_html(request.compare, answers, second, options)
                    yield self._page(answers, request.modes, "", asked, options, shown,
                                     relevance=relevance)  # fmt: skip
        except RequestError as error:
            status = render.message_html(str(self.refused(error)))
            shown = render.comparison_html(request.compare, answers, second, options)
            yield self._page(answers, request.modes, status, asked, options, shown,
                             relevance=relevance)  # fmt: skip
            return
        panel = self._panel(request)
        shown = render.comparison_html(request.compare, answers, second, options)
        yield self._page(answers, request.modes, "", asked, options, shown, panel, relevance)

    def _panel(self, request: Request) -> str:
        info = self._info(request.policy)
        notice = self.backend.notices.get(request.policy, self.backend.notice)
        return render.model_panel(info, notice, self.backend.serving,
                                  policy=request.policy, why=request.why)  # fmt: skip

    @staticmethod
    def _page(answers, modes, status, asked=None, options=(), second="", panel=None,
              relevance=""):  # fmt: skip
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
            second,
            gr.update() if panel is None else panel,
            relevance,
        )

    # ------------------------------------------------------------------------------------- API

    def answer_api(self, scan, question, options, modes=None, frame=None, window=None,
                   checks=None, plane=None, series=None, policy=None, compare=None,
                   files=None, slice=None, modality=None, maps=None) -> dict:  # fmt: skip
        """`/answer`: one JSON result; `error` holds a plain sentence when it cannot answer.

        `frame` (or its other name, `slice`) is the 0-based slice (or frame); `checks`: the
        trust-aid controls as "mode:check" strings (None: the defaults); `policy`: a catalogue
        name or "Auto", which routes by the scan's DICOM Modality or by `modality` (one of
        protocol.MODALITIES, for a picture); `files`: more files of the same upload (a series),
        beside or instead of `scan`; `maps`: true adds each mode's relevance map."""
        found = self._respond(scan, files, question, options, modes, (frame, slice), window,
                              checks, plane, series, policy, modality, compare,
                              stream=False, maps=maps)  # fmt: skip
        return list(found)[-1]

    def stream_api(self, scan, question, options, modes=None, frame=None, window=None,
                   checks=None, plane=None, series=None, policy=None, compare=None,
                   files=None, slice=None, modality=None, maps=None):  # fmt: skip
        """`/answer_stream`: JSON results growing with the answers; the last has done=True (and,
        with `maps`, the relevance maps)."""
        yield from self._respond(scan, files, question, options, modes, (frame, slice), window,
                                 checks, plane, series, policy, modality, compare,
                                 stream=True, maps=maps)  # fmt: skip

    def _respond(self, scan, files, question, options, modes, frame, window, checks, plane,
                 series, policy, modality, compare, stream: bool, maps=None):  # fmt: skip
        info = self.backend.info
        try:
            paths = read_upload(scan, files, self.api_root)
            index, hint = read_slice(*frame), read_modality(modality)
            maps = read_maps(maps)
            request = self.check_request(paths, question, options, modes, index, window, checks,
                                         plane, series, policy, hint, compare)  # fmt: skip
            extra = {"policy": request.policy, "why": request.why}
            answers = {}
            for answers in self._generate(request, request.policy, stream, maps):
                info = self._info(request.policy)  # loaded by now, on first use
                yield render.api_payload(info, answers=answers, scan=request.scan,
                                         question=request.question, **extra)  # fmt: skip
            if request.compare:
                for second in self._generate(request, request.compare, stream):
                    other = render.api_payload(self._info(request.compare), answers=second,
                                               question=request.question,
                                               policy=request.compare)  # fmt: skip
                    yield render.api_payload(info, answers=answers, scan=request.scan,
                                             question=request.question, compare=other,
                                             **extra)  # fmt: skip
        except RequestError as error:
            yield render.api_payload(info, error=str(self.refused(error)))


def read_maps(value) -> bool:
    """The API's `maps`: true or false (None: false, the default; maps cost a pass per mode)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise RequestError("`maps` must be true or false.", "maps")


def read_slider(value) -> int | None:
    """The page's slider counts from 1, as viewers do; the scan reader counts from 0."""
    index = read_frame(value)
    return index - 1 if index else None
