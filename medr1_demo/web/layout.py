"""The clinician page: Gradio Blocks layout wired to `medr1_demo.web.handlers`. Never imports torch.

`build_demo(backend, config)` returns the Blocks; `app.py` loads the engine, wraps its calls in a
`Backend`, and launches with `launch_options(config)` (theme, css, auth, ...).

Named API endpoints: `/answer` (one JSON result), `/answer_stream` (growing JSON results) and
`/batch` (a case list and a ZIP of images -> the results CSV); see docs/api.md. Page-only events
are private: they are not part of the API. The Batch tab is `medr1_demo.web.batch`.
"""

import json
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from medr1_demo.config import AppConfig
from medr1_demo.policy.catalogue import AUTO
from medr1_demo.protocol import MAX_OPTIONS, MIN_OPTIONS, MODALITIES, MODES, NO_THINKING, THINKING
from medr1_demo.scan.windowing import WINDOW_CHOICES
from medr1_demo.web import aids, render
from medr1_demo.web.batch import BatchTab
from medr1_demo.web.handlers import FROM_SCAN, Backend, Handlers
from medr1_demo.web.scans import PLANE_NAMES
from medr1_demo.web.uploads import Sweeper, UploadGuard

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "assets" / "examples"
CSS = Path(__file__).with_name("page.css").read_text(encoding="utf-8")
MODE_CHOICES = [(render.MODE_LABELS[m], m) for m in MODES]
PRIVATE = {"api_visibility": "private"}
API_NAMES = ("answer", "answer_stream", "batch")  # the only events callable by raw HTTP

__all__ = ["Backend", "Handlers", "build_demo", "launch_options", "load_examples", "theme"]


def theme() -> gr.themes.Base:
    """A quiet clinical theme with system fonts (nothing fetched from a font CDN)."""
    return gr.themes.Default(
        primary_hue="blue",
        neutral_hue="slate",
        radius_size="sm",
        font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    )


def launch_options(
    config: AppConfig, examples_dir: Path = EXAMPLES_DIR, uploads: Path | None = None
) -> dict:
    """Keyword arguments for `demo.launch`: address, login, styling, upload limit; never shared.

    With `uploads` (the private upload folder), `UploadGuard` refuses every file URL inside it
    and every raw HTTP call of a page-only event.
    """
    server = config.server
    auth = tuple(server.auth.split(":", 1)) if server.auth else None
    app_kwargs = {}
    if uploads is not None:
        guard = Middleware(UploadGuard, folder=uploads, api_names=API_NAMES)
        app_kwargs["middleware"] = [guard]
    return {
        "app_kwargs": app_kwargs,
        "server_name": server.host,
        "server_port": server.port,
        "auth": auth,
        "share": False,
        "theme": theme(),
        "css": CSS,
        "max_file_size": f"{server.max_upload_mb}mb",
        "allowed_paths": [str(examples_dir)] if Path(examples_dir).is_dir() else None,
        "show_error": False,
        "footer_links": ["api"],
        "run_history": False,  # would keep questions and answers in the browser
        "enable_monitoring": False,
        "mcp_server": False,
    }


# The inputs of /answer and /answer_stream, in the order Gradio's raw routes take them.
API_INPUTS = ("scan", "question", "options", "modes", "frame", "window", "checks", "plane",
              "series", "policy", "compare", "files", "slice", "modality", "maps")  # fmt: skip


def load_examples(folder: Path = EXAMPLES_DIR) -> tuple[list[list[str]], list[str]]:
    """Rows (file, question, options one per line) and labels from `folder`/examples.json."""
    index = Path(folder) / "examples.json"
    if not index.exists():
        return [], []
    rows, labels = [], []
    for entry in json.loads(index.read_text(encoding="utf-8")):
        file = Path(folder) / entry["file"]
        if file.exists():
            rows.append([[str(file)], entry["question"], "\n".join(entry["options"])])
            labels.append(
                " · ".join(filter(None, (entry.get("modality"), entry.get("question_type"))))
            )
    return rows, labels


def _header(backend: Backend) -> str:
    notice = render.message_html(backend.notice, "warning") if backend.notice else ""
    return (
        '<header class="medr1-header"><h1>Med-R1 <span>thinking vs no thinking</span></h1>'
        "<p>Upload a scan, ask a multiple-choice question, and compare the policy's answer "
        "with a step-by-step rationale against its direct answer.</p></header>"
        f"{render.disclaimer_html()}{notice}"
    )


def build_demo(
    backend: Backend,
    config: AppConfig | None = None,
    examples_dir: Path = EXAMPLES_DIR,
    uploads: Path | None = None,
) -> gr.Blocks:
    """The page and its API over `backend`; queue it with `configure_queue` before launching.

    `uploads`: the private upload folder, whose files are deleted as soon as they are read.
    """
    config = config or AppConfig()
    # Every file the API names must be an upload: in this folder (Gradio's, without `uploads`).
    api_root = uploads or gr.utils.get_upload_folder()
    handlers = Handlers(backend, config, uploads=uploads, api_root=api_root)
    batch_tab = BatchTab(backend, config, uploads)
    server = config.server
    age = max(1, round(server.cache_minutes * 60))  # uploads older than this are deleted...
    every = min(300, max(1, age // 4))  # ...by a sweep this often, and all at shutdown
    generation = {"concurrency_id": "generation", "concurrency_limit": server.concurrency}
    light = {"concurrency_id": "scan", "concurrency_limit": 4, **PRIVATE}

    with gr.Blocks(title="Med-R1 clinician demo", analytics_enabled=False) as demo:
        gr.HTML(_header(backend))
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("One case", id="one-case"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5, min_width=320):
                        gr.HTML('<h2 class="medr1-h2">Scan</h2>')
                        scan_file = gr.File(
                            label="Scan: a DICOM file, several (a series) or a ZIP of them, a NIfTI "
                            "volume (.nii, .nii.gz), or a PNG/JPEG picture",
                            file_count="multiple",
                            type="filepath",
                            height=150,
                            elem_id="scan-file",
                        )
                        scan_notes = gr.HTML(elem_id="scan-notes")
                        series = gr.Dropdown([], label="Series", visible=False, elem_id="series")
                        preview = gr.HTML(render.preview_html(None), elem_id="scan-preview")
                        frame = gr.Slider(1, 2, value=1, step=1, label="Frame", visible=False,
                                          elem_id="slice")  # fmt: skip
                        plane = gr.Radio(
                            list(PLANE_NAMES), label="Plane", visible=False, elem_id="plane"
                        )
                        window = gr.Dropdown(
                            list(WINDOW_CHOICES), value="auto", label="Window", visible=False
                        )
                        with gr.Accordion("Scan details (identifiers removed)", open=False):
                            meta = gr.HTML(elem_id="scan-meta")
                    with gr.Column(scale=7, min_width=420):
                        gr.HTML('<h2 class="medr1-h2">Question</h2>')
                        question = gr.Textbox(
                            label="Question",
                            lines=2,
                            max_length=server.max_question_chars,
                            placeholder="What imaging technique is employed for obtaining this image?",
                            elem_id="question",
                        )
                        options = gr.Textbox(
                            label=f"Answer options, one per line ({MIN_OPTIONS} to {MAX_OPTIONS}); "
                            "they become A, B, C, …",
                            lines=4,
                            placeholder="CT\nMRI\nX-Ray\nUltrasound",
                            elem_id="options",
                        )
                        policy, hint, compare = _policy_row(backend)
                        with gr.Row(equal_height=False):
                            modes = gr.CheckboxGroup(
                                MODE_CHOICES,
                                value=list(MODES),
                                label="Modes",
                                scale=3,
                                elem_id="modes",
                            )
                            checks = gr.CheckboxGroup(
                                aids.CHECK_CHOICES,
                                value=list(aids.DEFAULT_CHECKS),
                                label="Checks beside the answers",
                                info="Each asks the question once more in the same batch.",
                                scale=4,
                                elem_id="checks",
                            )
                            split = gr.Button(
                                "Split A)… B)… options out of the question",
                                size="sm",
                                variant="secondary",
                                scale=2,
                                elem_id="split",
                            )
                        maps = gr.Checkbox(
                            False,
                            label="Show where each mode looked (relevance maps)",
                            info="One more pass per mode, after the answers.",
                            elem_id="maps",
                        )
                        asked = gr.HTML(elem_id="asked")
                        run = gr.Button("Answer", variant="primary", elem_id="run")
                        status = gr.HTML(elem_id="status")
                        with gr.Row(equal_height=False):
                            with gr.Column(elem_id="col-thinking", min_width=240):
                                think_card = gr.HTML(render.answer_card(THINKING, None))
                                with gr.Accordion("Reasoning", open=True):
                                    think_rationale = gr.HTML(render.rationale_html(None))
                                with gr.Accordion("Raw output", open=False):
                                    think_raw = gr.HTML(render.raw_output_html(None))
                            with gr.Column(elem_id="col-no-thinking", min_width=240):
                                plain_card = gr.HTML(render.answer_card(NO_THINKING, None))
                                with gr.Accordion("Raw output", open=False):
                                    plain_raw = gr.HTML(render.raw_output_html(None))
                        agree = gr.HTML(render.agreement_html(None), elem_id="agreement")
                        relevance = gr.HTML(elem_id="relevance")
                        second = gr.HTML(elem_id="compare")
                        gr.HTML(f'<p class="medr1-legend">{aids.AIDS_LEGEND}</p>')

                rows, labels = load_examples(examples_dir)
                # The gallery: a Dataset whose click is a queued page event like the others (Gradio's
                # Examples load through an unqueued raw route, which the upload guard closes).
                gallery = gr.Dataset(
                    components=[scan_file, question, options],
                    samples=rows,
                    sample_labels=labels,
                    type="index",
                    label="Example cases (synthetic phantoms, no patient data)",
                    samples_per_page=16,
                    visible=bool(rows),
                    elem_id="examples",
                )
            with gr.Tab("Batch", id="batch"):
                batch_tab.build(PRIVATE)
        with gr.Accordion("Model", open=True):
            panel = render.model_panel(
                backend.info, backend.notice, backend.serving, policy=_default(backend)
            )
            model_panel = gr.HTML(panel, elem_id="model-panel")

        # Inputs of the named API endpoints; never shown on the page.
        with gr.Column(visible=False):
            # JSON inputs: every value reaches the handler, which answers a wrong one with a
            # sentence (a dropdown, number box or file box would refuse it with Gradio's own
            # message, or none). `scan` and `files` (a series as several files, beside or
            # instead of `scan`) take uploaded files: Gradio checks a file sent as
            # handle_file(...) is an upload, the handler checks every path is in the upload
            # folder. `slice` is `frame` by its other name; `modality` names a picture's.
            api_inputs = [gr.JSON(None, label=name) for name in API_INPUTS]
            api_result = gr.JSON(label="result")
            api_trigger = gr.Button("api")

        scan_views = [preview, series, frame, plane, window, meta, scan_notes]
        # The upload this page shows: its decoded scan leaves memory when the upload is
        # replaced or the page is closed (Gradio deletes a closed page's state).
        shown_upload = gr.State(None, delete_callback=handlers.views.release)

        def new_upload(files, chosen, previous):
            if previous and previous != files:
                handlers.views.release(previous)
            return (*handlers.new_scan(files, None, chosen), files)

        scan_file.change(  # a new upload: its first series, whatever was chosen before
            new_upload, [scan_file, policy, shown_upload], [*scan_views, shown_upload],
            show_progress="minimal", **light,
        )  # fmt: skip
        series.input(handlers.new_scan, [scan_file, series, policy], scan_views, **light)
        shown = [preview, frame, meta, scan_notes]
        view = [scan_file, series, frame, window, plane, policy]
        gr.on([frame.release, window.input, policy.input], handlers.show_scan, view, shown,
              show_progress="minimal", **light)  # fmt: skip
        plane.input(  # a new plane starts at its middle slice
            lambda files, chosen, shade, where, who: handlers.show_scan(
                files, chosen, None, shade, where, who
            ),
            [scan_file, series, window, plane, policy], shown, **light,
        )  # fmt: skip
        split.click(handlers.split, question, [question, options, status], **light)

        def load_example(index):
            """A gallery case: its file (copied into the upload folder), question and options."""
            if not isinstance(index, int) or not 0 <= index < len(rows):
                return gr.update(), gr.update(), gr.update()
            return rows[index]

        gallery.click(load_example, gallery, [scan_file, question, options], **light)
        gr.on(
            [question.change, options.change],
            handlers.asked,
            [question, options],
            asked,
            show_progress="hidden",
            trigger_mode="always_last",
            **light,
        )
        page_outputs = [status, think_card, think_rationale, think_raw, plain_card, plain_raw,
                        agree, asked, second, model_panel, relevance]  # fmt: skip
        run.click(
            handlers.run,
            [scan_file, frame, window, question, options, modes, checks, plane, series, policy,
             hint, compare, maps],
            page_outputs,
            show_progress="full",
            show_progress_on=[status],
            **generation,
            **PRIVATE,
        )  # fmt: skip
        api_trigger.click(
            handlers.answer_api,
            api_inputs,
            api_result,
            api_name="answer",
            api_description="Answer a multiple-choice question about a scan in both modes.",
            show_progress="hidden",
            **generation,
        )
        api_trigger.click(
            handlers.stream_api,
            api_inputs,
            api_result,
            api_name="answer_stream",
            api_description="As /answer, streaming growing results; the last has done=true.",
            show_progress="hidden",
            **generation,
        )
    # Uploads older than `age` are deleted by a sweep this often, and all at shutdown; Gradio's
    # own sweep would delete its copies of the examples too (web.uploads.Sweeper).
    keep = [Path(row[0][0]).name for row in rows]
    demo.medr1_sweeper = Sweeper(uploads or gr.utils.get_upload_folder(), age, every, keep).start()
    return demo


def _default(backend: Backend) -> str | None:
    return backend.policies[0] if backend.policies else None


def _policy_row(backend: Backend):
    """The policy picker ("Auto" routes by modality), the modality for Auto, and a second policy
    to compare with; hidden when the server serves one policy."""
    names = list(backend.policies)
    many = len(names) > 1
    with gr.Row(equal_height=False, visible=many):
        policy = gr.Dropdown(
            [AUTO, *names], value=names[0] if names else None, label="Policy",
            info="Auto picks the specialist for the scan's modality.", scale=3,
            elem_id="policy",
        )  # fmt: skip
        hint = gr.Dropdown(
            [FROM_SCAN, *MODALITIES], value=FROM_SCAN, label="Modality (for Auto)",
            info="Pictures carry none: say what it is.", scale=2, elem_id="modality",
        )  # fmt: skip
        compare = gr.Dropdown(
            ["none", *names], value="none", label="Compare with", scale=3, elem_id="compare-with",
            info="A second policy answers the same question.",
        )  # fmt: skip
    return policy, hint, compare


def configure_queue(demo: gr.Blocks, config: AppConfig) -> gr.Blocks:
    """A bounded queue: overload is refused with a message instead of waiting forever."""
    return demo.queue(
        max_size=config.server.queue_size,
        default_concurrency_limit=config.server.concurrency,
        api_open=False,
    )
