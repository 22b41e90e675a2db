"""The Batch tab and the `/batch` endpoint: a case list and a ZIP of images in, results out.

`BatchTab.run` (the page) reads the upload with `medr1_demo.batch.cases`, asks the cases in
groups through the backend's `answer_many` (`medr1_demo.batch.runner.ask_items`: a running
scheduler batches their rows with everyone else's) and yields, as cases finish, a status line, the results table and
the downloads: results CSV and JSON (one row per case and mode) and, when the list gives
answers, the accuracy summary as `trainer eval` writes it (summary.csv, summary.json) with its
PNG figure. A bad record is listed as `row N: reason` and skipped. Stopping a batch keeps the
rows already finished, on the page and in the downloads. `BatchTab.api` is the same as one call
that returns the results CSV (`/batch`, docs/api.md).

Privacy: the ZIP's images are written into a folder of this batch inside the private upload
folder and deleted with it when the batch ends; the uploads themselves are deleted once read.
The downloads get a folder of their own there, served only under their random names
(`web.uploads.UploadGuard`) and deleted by the upload sweep (`cache_minutes`) or at shutdown.
Cases are shown by the person's own paths inside their ZIP, never a server path; nothing from
the files is logged. No torch here.

Run: `.venv/bin/python -m pytest tests/test_batch.py -q`.
"""

import base64
import html
import io
import logging
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

from medr1_demo.batch import outputs, scores
from medr1_demo.batch.cases import CaseListError, read_cases
from medr1_demo.batch.runner import aided_lines, ask_items, picture, request_sizes
from medr1_demo.config import AppConfig
from medr1_demo.protocol import LETTERS, MODES
from medr1_demo.web import aids, render, uploads
from medr1_demo.web.inputs import RequestError, read_checks, read_modes

logger = logging.getLogger(__name__)
OUTPUT_PREFIX = "medr1-batch-"  # downloads are named medr1-batch-<hex>-<what>.<csv|json|png>
UPDATE_SECONDS = 1.0  # the table and downloads are redrawn at most this often while running
THUMBNAIL_SIDE = 56


class BatchTab:
    """The Batch tab's handlers over the page's `Backend`, the app's limits and upload folder."""

    def __init__(self, backend, config: AppConfig | None = None, uploads_folder=None):
        self.backend, self.config = backend, config or AppConfig()
        self.uploads = Path(uploads_folder) if uploads_folder else None

    # ------------------------------------------------------------------------------- checks

    def _policy(self, value) -> dict:
        names = self.backend.policies
        if not names:
            if value not in (None, ""):
                raise RequestError("This server serves one policy; leave the policy out.", "policy")
            return {}
        if value in (None, ""):
            return {"policy": names[0]}
        if not isinstance(value, str) or value not in names:
            raise RequestError(f"Unknown policy; choose one of: {', '.join(names)}.", "policy")
        return {"policy": value}

    def _files(self, cases_file, images_zip) -> tuple[str | None, str | None]:
        def one(value):
            if isinstance(value, list | tuple):
                value = (value or [None])[0] if len(value) <= 1 else value
            if value is not None and not isinstance(value, str):
                raise RequestError("Upload one case list and one ZIP of images.", "batch_files")
            return value or None

        cases, images = one(cases_file), one(images_zip)
        if cases is None and images is None:
            raise RequestError("Upload a case list (JSON or CSV) and a ZIP of its images.", "none")
        if images is None:
            raise RequestError("Upload the images too: a ZIP holding the files the list names.",
                               "no_zip")  # fmt: skip
        return cases, images

    # ------------------------------------------------------------------------------- layout

    def build(self, private: dict) -> None:
        """The tab's components and events (inside `with gr.Tab(...)`), and the `/batch` API.

        Batches run one at a time (their rows still share the model with single questions).
        """
        names = list(self.backend.policies)
        gr.HTML(
            '<p class="medr1-legend">Many cases at once: a case list (a Med-R1 split JSON, an '
            "OmniMedVQA QA JSON, or a CSV with the columns image, question, options, answer; "
            "the answer may be left out) and a ZIP of the images it names, or one ZIP holding "
            f"both. At most {self.config.server.max_batch_cases} cases per batch.</p>"
        )
        with gr.Row(equal_height=False):
            cases = gr.File(label="Case list (JSON or CSV; optional when the ZIP holds it)",
                            type="filepath", height=120, elem_id="batch-cases")  # fmt: skip
            images = gr.File(label="Images (ZIP)", type="filepath", height=120,
                             elem_id="batch-images")  # fmt: skip
        with gr.Row(equal_height=False):
            policy = gr.Dropdown(names, value=names[0] if names else None, label="Policy",
                                 visible=len(names) > 1, scale=3, elem_id="batch-policy")  # fmt: skip
            modes = gr.CheckboxGroup([(render.MODE_LABELS[m], m) for m in MODES], value=list(MODES),
                                     label="Modes", scale=3, elem_id="batch-modes")  # fmt: skip
            checks = gr.CheckboxGroup(aids.CHECK_CHOICES, value=[], label="Checks",
                                      info="Each asks every case once more.", scale=4,
                                      elem_id="batch-checks")  # fmt: skip
        with gr.Row():
            run = gr.Button("Run the batch", variant="primary", elem_id="batch-run")
            stop = gr.Button("Stop (keeps finished rows)", variant="stop", elem_id="batch-stop")
        status = gr.HTML(elem_id="batch-status")
        files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                        elem_id="batch-downloads")  # fmt: skip
        table = gr.HTML(elem_id="batch-results")
        batch = {"concurrency_id": "batch", "concurrency_limit": 1}
        event = run.click(self.run, [cases, images, policy, modes, checks], [status, table, files],
                          show_progress="full", show_progress_on=[status], **batch, **private)  # fmt: skip
        stop.click(None, None, None, cancels=[event], **private)
        with gr.Column(visible=False):
            api_inputs = [gr.File(label="cases", type="filepath"),
                          gr.File(label="images", type="filepath")]  # fmt: skip
            api_inputs += [gr.JSON(None, label=name) for name in ("policy", "modes", "checks")]
            api_csv = gr.File(label="results")
            api_trigger = gr.Button("batch")
        api_trigger.click(
            self.api, api_inputs, api_csv, api_name="batch",
            api_description="Answer a case list (JSON or CSV) with a ZIP of its images; returns "
            "the results CSV, one row per case and mode.",
            show_progress="hidden", **batch,
        )  # fmt: skip

    # ---------------------------------------------------------------------------------- run

    def batch(self, cases_file, images_zip, policy, modes, checks, with_thumbnails: bool = True):
        """Yields (lines, problems, finished, total, thumbnails) as cases finish; the uploads
        are deleted once read, the batch's folder (its images) when the iteration ends."""
        server = self.config.server
        chosen = read_modes(modes)
        controls = read_checks(list(checks) if checks is not None else [])
        extra = self._policy(policy)
        list_path, zip_path = self._files(cases_file, images_zip)
        folder = Path(tempfile.mkdtemp(prefix="batch-", dir=self.uploads))
        try:
            try:
                cases = read_cases(list_path, zip_path, folder, server.max_batch_cases,
                                   server.max_batch_mb << 20)  # fmt: skip
            finally:
                for path in (list_path, zip_path):
                    if path:
                        uploads.discard(path, self.uploads)
            if not cases.items:
                raise RequestError(
                    "None of the cases can be run. " + "; ".join(cases.problems[:5]), "no_cases"
                )
            logger.info("batch: %d cases, %d skipped", len(cases.items), len(cases.problems))
            started = time.perf_counter()
            thumbnails: dict[str, str] = {}  # case -> its thumbnail (by the private path first)

            def read(path, size):
                image = picture(path, size)
                if with_thumbnails:  # the page shows them; the API returns a CSV only
                    thumbnails[path] = thumbnail_uri(image)
                return image

            def answer_many(asked, **kwargs):
                kwargs = {**kwargs, "settings": self.config.decoding, **extra}
                if self.backend.answer_many is not None:
                    return self.backend.answer_many(asked, **kwargs)
                return [self.backend.answer(image, q, **kwargs) for image, q in asked]

            # Groups of cases, each one request whose rows join the shared batch together; as
            # many groups in flight as the batch holds, and a few waiting to take their places.
            waiting = max(1, server.queue_size // 4)
            group, workers = request_sizes(server.max_batch_rows, chosen, controls, 4, waiting)
            lines, problems, total = [], list(cases.problems), len(cases.items)
            yield lines, problems, 0, total, thumbnails
            done = 0
            asked = ask_items(answer_many, cases.items, chosen, controls, workers, group, read)
            for done, (item, result) in enumerate(asked, 1):
                if isinstance(result, str):
                    problems.append(f"{item.id}: {result}")
                else:
                    lines.extend(aided_lines(item, result, chosen))
                    thumbnails[item.id] = thumbnails.get(
                        item.record.image, ""
                    )  # cases may share it
                if done == total:
                    logger.info("batch: answered in %.1f s", time.perf_counter() - started)
                yield lines, problems, done, total, thumbnails
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def run(self, cases_file, images_zip, policy, modes, checks, progress=gr.Progress()):  # noqa: B008
        """The page: (status, table, downloads), redrawn as cases finish."""
        started, shown = time.perf_counter(), 0.0
        try:
            updates = self.batch(cases_file, images_zip, policy, modes, checks)
            stem = f"{OUTPUT_PREFIX}{secrets.token_hex(6)}"
            out = None  # the downloads' own folder: they outlive the batch's images
            for lines, problems, done, total, thumbs in updates:
                progress((done, total), desc="cases", unit="cases")
                now = time.perf_counter()
                if done < total and now - shown < UPDATE_SECONDS:
                    continue
                shown = now
                out = out or Path(tempfile.mkdtemp(prefix="downloads-", dir=self.uploads))
                files = write_downloads(lines, problems, out, stem, final=done == total)
                status = status_html(done, total, problems, now - started)
                yield status, table_html(lines, thumbs), files
        except RequestError as error:
            logger.info("batch refused: %s", error.reason)
            yield render.message_html(str(error), "warning"), "", None
        except CaseListError as error:
            logger.info("batch refused: case_list")
            yield render.message_html(str(error), "warning"), "", None
        except Exception as error:  # never the server: one line in the log, a sentence shown
            logger.warning("batch failed: %s", type(error).__name__)
            sentence = "The batch stopped on an unexpected error; finished rows are kept above."
            yield render.message_html(sentence, "error"), gr.update(), gr.update()

    def api(self, cases, images, policy=None, modes=None, checks=None) -> str:
        """`/batch`: the whole batch, then its results CSV (one row per case and mode, then one
        per record left out, with its reason); a batch that cannot run raises a sentence.
        """
        try:
            last = None
            for last in self.batch(cases, images, policy, modes, checks, False):  # noqa: B007
                if last[2] == last[3]:
                    stem = f"{OUTPUT_PREFIX}{secrets.token_hex(6)}"
                    out = Path(tempfile.mkdtemp(prefix="downloads-", dir=self.uploads))
                    csv_path, _ = outputs.write_results(last[0], out, stem + "-results", last[1])
                    return str(csv_path)  # Gradio serves a copy; the sweep deletes both
        except (RequestError, CaseListError) as error:
            raise gr.Error(str(error), print_exception=False) from None
        except Exception as error:  # never the server: one line in the log, a sentence back
            logger.warning("batch failed: %s", type(error).__name__)
            raise gr.Error(
                "The batch stopped on an unexpected error.", print_exception=False
            ) from None
        raise gr.Error("The batch ended without results.", print_exception=False)


def write_downloads(lines, problems, out: Path, stem: str, final: bool) -> list[str]:
    """Results CSV and JSON (records left out at the end); once the batch is done and answers
    were given, the accuracy summary as `trainer eval` writes it, and its figure."""
    csv_path, json_path = outputs.write_results(lines, out, f"{stem}-results", problems)
    files = [str(csv_path), str(json_path)]
    modes = tuple(dict.fromkeys(line["mode"] for line in lines))
    answered = [line for line in lines if line.get("answer")]
    if final and answered:
        summary = scores.summarise(answered, modes)
        json_path, csv_path = scores.write_summary(summary, out, stem=f"{stem}-summary")
        figure = outputs.accuracy_figure(summary, out / f"{stem}-summary.png")
        files += [str(csv_path), str(json_path), str(figure)]
    return files


def thumbnail_uri(image) -> str:
    """A small JPEG of `image` as a data URI (the table inlines it; nothing is served)."""
    small = image.convert("RGB")
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def status_html(done: int, total: int, problems: list[str], seconds: float) -> str:
    """How far the batch is, and each record left out as `row N: reason`."""
    word = "Finished" if done == total else "Running"
    text = f"{word}: {done} of {total} cases in {seconds:.1f} s."
    if problems:
        text += f" {len(problems)} record(s) skipped."
    listed = "".join(f"<li>{html.escape(p)}</li>" for p in problems[:100])
    more = f"<li>... and {len(problems) - 100} more</li>" if len(problems) > 100 else ""
    skipped = f'<ul class="medr1-batch-skipped">{listed}{more}</ul>' if problems else ""
    return render.message_html(text, "info") + skipped


def table_html(lines: list[dict], thumbnails: dict[str, str]) -> str:
    """One row per case: thumbnail and its name in the ZIP, question, each mode's answer with
    its option probability and checks, and right/wrong when the list gave the answer."""
    if not lines:
        return ""
    modes = list(dict.fromkeys(line["mode"] for line in lines))
    cases: dict[str, dict] = {}
    for line in lines:
        cases.setdefault(line["id"], {})[line["mode"]] = line
    head = "".join(f"<th>{html.escape(render.MODE_LABELS.get(m, m))}</th>" for m in modes)
    body = []
    for case, by_mode in sorted(cases.items(), key=lambda kv: _number(kv[0])):
        first = next(iter(by_mode.values()))
        thumb = thumbnails.get(case, "")
        image = f'<img src="{thumb}" alt="">' if thumb else ""
        cells = "".join(_answer_cell(by_mode.get(m)) for m in modes)
        body.append(
            f"<tr><td>{html.escape(case)}</td>"
            f'<td class="medr1-batch-image">{image}<span>{html.escape(first.get("image") or "")}'
            f"</span></td><td>{html.escape(first.get('question') or '')}</td>{cells}"
            f"<td>{html.escape(first.get('answer') or '-')}</td></tr>"
        )
    return (
        '<table class="medr1-batch-table" id="batch-table"><thead><tr><th>Case</th><th>Image</th>'
        f"<th>Question</th>{head}<th>Given answer</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _number(case: str) -> int:
    digits = "".join(c for c in case if c.isdigit())
    return int(digits) if digits else 0


def _answer_cell(line: dict | None) -> str:
    if line is None:
        return "<td>-</td>"
    letter = line.get("prediction")
    shown = html.escape(letter) if letter and letter in LETTERS else "no answer"
    probability = line.get("probability")
    if probability is not None:
        shown += f" <small>{100 * probability:.0f}%</small>"
    verdict = ""
    if line.get("correct") is not None:
        verdict = " ✓ right" if line["correct"] else " ✗ wrong"
    checks = "; ".join(f"{k}: {v}" for k, v in (line.get("checks") or {}).items())
    checks = f"<br><small>{html.escape(checks)}</small>" if checks else ""
    return f"<td>{shown}{verdict}{checks}</td>"
