"""Probed as a hostile or careless user would, against a real launched `python app.py`.

Run: `.venv/bin/python -m pytest tests/test_hardening.py -q`. Uploads under a patient's name,
SIGTERM, raw HTTP calls of the page's own events, upload URLs, wrongly typed values for every
API parameter, identifiers planted in every field and the server's log read for them.
"""

import json
import shutil
import signal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import launch_app
from gradio_client import Client

from medr1_demo.web.layout import API_INPUTS

PLANTED = "DOE_JOHN_123456"
NONE = (None,) * (len(API_INPUTS) - 3)  # the inputs after scan, question and options: defaults
ROOT = Path(__file__).resolve().parents[1]
PAGE_EVENTS = (
    "new_scan",
    "show_scan",
    "split",
    "asked",
    "run",
    "load_example",
    "lambda",
    "lambda_1",
)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    folder = tmp_path_factory.mktemp("hardening")
    flags = ["--model", str(tiny_checkpoint), "--max-new-tokens", "4",
             "--max-new-tokens-no-thinking", "4"]  # fmt: skip
    running = launch_app(folder, *flags)
    yield running
    running.stop()


@pytest.fixture
def planted_file(tmp_path, planted_dicom) -> Path:
    path = tmp_path / f"{PLANTED}.dcm"
    shutil.copy(planted_dicom, path)
    return path


def upload(url: str, path: Path) -> str:
    """One raw upload; the server path Gradio hands back."""
    with httpx.Client() as http:
        reply = http.post(
            url + "gradio_api/upload", files={"files": (path.name, path.read_bytes())}
        )
    return reply.json()[0]


def call(url: str, name: str, data: list) -> tuple[int, dict | None]:
    """A raw HTTP call of an event (Gradio's REST route): (status, the completed result)."""
    with httpx.Client(timeout=60) as http:
        started = http.post(url + f"gradio_api/call/{name}", json={"data": data})
        if started.status_code != 200:
            return started.status_code, None
        event = started.json()["event_id"]
        kind = None
        with http.stream("GET", url + f"gradio_api/call/{name}/{event}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.removeprefix("event:").strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    found = json.loads(line.removeprefix("data:"))
                    return 200, found[0] if isinstance(found, list) else {"error": found}
    return 200, None


def file_ref(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


# ---------------------------------------------------------------------------------- uploads


def test_uploads_are_anonymous_unfetchable_and_deleted_once_read(server, planted_file):
    path = upload(server.url, planted_file)
    assert PLANTED not in path and Path(path).name.startswith("upload-")
    assert not any(PLANTED in str(p) for p in server.upload_dir.rglob("*"))
    with httpx.Client() as http:
        assert http.get(server.url + f"gradio_api/file={path}").status_code == 403
    status, result = call(server.url, "answer", [file_ref(path), "Which?", ["CT", "MRI"], *NONE])
    assert status == 200 and result["ok"], result
    assert not Path(path).exists()  # read into memory, then deleted from the disk
    leftovers = [p for p in files_under(server.upload_dir) if p.stat().st_size == 0]
    # The per-upload folders (named by content hash) go with their file; Gradio's own fixed
    # folders (e.g. its edit history) are not uploads.
    folders = [p for p in server.upload_dir.rglob("*") if p.is_dir() and len(p.name) == 64]
    empty_folders = [p for p in folders if not any(p.iterdir())]
    assert leftovers == [] and empty_folders == []


def test_sigterm_leaves_nothing_and_a_new_server_serves_nothing_of_it(tmp_path, tiny_checkpoint,
                                                                        planted_file):  # fmt: skip
    flags = ["--model", str(tiny_checkpoint), "--max-new-tokens", "4",
             "--max-new-tokens-no-thinking", "4"]  # fmt: skip
    first = launch_app(tmp_path, *flags)
    paths = [upload(first.url, planted_file) for _ in range(3)]  # uploaded, never used
    assert all(Path(p).exists() for p in paths)
    first.process.send_signal(signal.SIGTERM)
    first.process.wait(timeout=30)
    assert files_under(tmp_path / "uploads") == []
    second = launch_app(tmp_path, *flags)
    try:
        with httpx.Client() as http:
            for path in paths:
                assert http.get(second.url + f"gradio_api/file={path}").status_code in (403, 404)
    finally:
        second.stop()


# ---------------------------------------------------------------------------------- routes


RUN_ROUTES = ("call", "call/v2", "run", "api")  # Gradio's raw routes that run an event by name


@pytest.mark.parametrize("name", PAGE_EVENTS)
def test_page_only_events_are_refused_by_raw_http(server, name):
    with httpx.Client() as http:
        for route in RUN_ROUTES:
            body = {} if route == "call/v2" else {"data": []}
            reply = http.post(server.url + f"gradio_api/{route}/{name}", json=body)
            assert reply.status_code == 403, (route, name, reply.status_code)


def test_the_named_endpoints_stay_callable_by_every_raw_route(server, ct_dicom):
    path = upload(server.url, ct_dicom)
    with httpx.Client(timeout=60) as http:
        reply = http.post(server.url + "gradio_api/call/v2/answer",
                          json={"scan": file_ref(path), "question": "Which?",
                                "options": ["CT", "MRI"]})  # fmt: skip
        assert reply.status_code == 200 and reply.json()["event_id"]
        # Not refused by the guard: Gradio itself keeps queued events off its unqueued route.
        reply = http.post(server.url + "gradio_api/api/answer", json={"data": []})
        assert reply.status_code == 404 and "queue" in reply.text


def file_urls(path: str) -> list[str]:
    """Every way Gradio 6.31 serves a file by path: `file=` and `file/`, with or without the
    `/gradio_api` prefix, plain, percent-encoded and doubly encoded."""
    once, twice = quote(path, safe=""), quote(quote(path, safe=""), safe="")
    return [f"{prefix}file{sep}{shown}" for prefix in ("gradio_api/", "")
            for sep in ("=", "/") for shown in (path, once, twice)]  # fmt: skip


def test_no_file_route_serves_an_upload_unread_or_kept(server, planted_file, tmp_path):
    from test_series import marked_volume, write_series, zip_files

    unread = upload(server.url, planted_file)  # uploaded, never used
    series = [*write_series(tmp_path / "a", marked_volume(4), number=2),
              *write_series(tmp_path / "b", marked_volume(3), number=5)]  # fmt: skip
    names = [f"study/{i}" for i in range(len(series))]
    kept = upload(server.url, zip_files(tmp_path / "two.zip", series, names))
    answered = call(server.url, "answer", [file_ref(kept), "Which?", ["CT", "MRI"], *NONE])[1]
    assert answered["ok"] and answered["scan"]["series"] == 0
    assert Path(kept).exists()  # an upload of several series stays, so another can be opened
    with httpx.Client() as http:
        for path in (unread, kept, str(Path(kept).parent)):
            for url in file_urls(path):
                reply = http.get(server.url + url)
                assert reply.status_code == 403, (url, reply.status_code)
                assert reply.content == b"Not available."
        examples = ROOT / "assets" / "examples"
        example = examples / json.loads((examples / "examples.json").read_text())[0]["file"]
        shown = http.get(server.url + f"gradio_api/file={example}")
        assert shown.status_code == 200 and shown.content == example.read_bytes()  # still served


# ------------------------------------------------------------------------------- bad values

BAD_VALUES = [
    # (parameter, value, words the sentence must hold)
    ("question", ["a", "list"], "question must be text"),
    ("question", 42, "question must be text"),
    ("question", "x" * 2001, "limit is 2000"),
    ("question", "", "Type a question"),
    ("options", 5, "list of texts"),
    ("options", [1, 2], "list of texts"),
    ("options", ["only one"], "2 to 8"),
    ("options", ["CT", "y" * 301], "at most 300"),
    ("modes", ["bogus"], "Unknown mode"),
    ("modes", 7, "Modes must be a list"),
    ("modes", [], "at least one mode"),
    ("frame", "abc", "whole number"),
    ("frame", True, "whole number"),
    ("frame", 1.5, "whole number"),
    ("frame", 99, "does not exist"),
    ("window", 123, "Unknown window"),
    ("window", "bogus", "Unknown window"),
    ("window", "lung", "does not apply"),  # a CT preset on an MR scan
    ("checks", "image", "Checks must be a list"),
    ("checks", ["no-thinking:colour"], "Unknown check"),
    ("plane", "diagonal", "axial, coronal or sagittal"),
    ("plane", "coronal", "no coronal view"),  # one slice has no other plane
    ("series", "x", "series must be a whole number"),
    ("series", 3, "holds one series"),
    ("policy", "no-such-policy", "Unknown policy"),
    ("compare", 5, "Unknown policy"),
    ("scan", 42, "must be one or more uploaded files"),
    ("scan", "abc", "uploaded to this server"),  # not an upload's path
    ("scan", "/etc/passwd", "uploaded to this server"),  # nor any other file of the server
    ("scan", {"path": 5}, "must be one or more uploaded files"),
    ("scan", [1, 2], "send the others of a series in `files`"),
    ("files", "x", "`files` must be a list"),
    ("files", 5, "`files` must be a list"),
    ("files", [5], "Each of `files` must be an uploaded file"),
    ("files", ["/etc/passwd"], "uploaded to this server"),
    ("slice", "abc", "slice must be a whole number"),
    ("slice", 99, "does not exist"),
    ("modality", "Photo", "Unknown modality"),
    ("modality", ["MRI"], "Unknown modality"),
    ("maps", "yes", "`maps` must be true or false"),
    ("maps", 1, "`maps` must be true or false"),
]
ORDER = API_INPUTS  # the raw routes take the inputs in this order


@pytest.mark.parametrize("name, value, words", BAD_VALUES, ids=lambda v: str(v)[:20])
def test_every_wrong_value_gets_a_plain_sentence(server, name, value, words):
    from pydicom.data import get_testdata_file

    scan = Path(get_testdata_file("MR_small.dcm", download=False))
    values = {key: None for key in ORDER}
    values.update({"scan": file_ref(upload(server.url, scan)), "question": "Which?",
                   "options": ["CT", "MRI"], name: value})  # fmt: skip
    status, result = call(server.url, "answer", [values[k] for k in ORDER])
    assert status == 200 and result is not None
    assert result["ok"] is False and words in result["error"], result["error"]


def test_no_scan_is_a_sentence_too(server):
    client = Client(server.url, verbose=False)
    result = client.predict(scan=None, question="Which?", options=["CT", "MRI"],
                            api_name="/answer")  # fmt: skip
    assert not result["ok"] and "Upload a scan first" in result["error"]


# ------------------------------------------------------------------------------------- logs


def test_the_log_holds_no_client_text_and_one_line_per_refusal(server, planted_file,
                                                              planted_identifiers):  # fmt: skip
    before = server.log_text()
    text = f"PATIENT {PLANTED}"
    asked = {"question": text, "options": [text, "MRI"]}
    refused = [
        {**asked, "frame": text},
        {**asked, "slice": text},
        {**asked, "window": text},
        {**asked, "modes": [text]},
        {**asked, "checks": [text]},
        {**asked, "plane": text},
        {**asked, "series": text},
        {**asked, "policy": text},
        {**asked, "compare": text},
        {**asked, "modality": text},
        {**asked, "scan": text},
        {**asked, "scan": {"path": f"/tmp/{PLANTED}.dcm"}},
        {**asked, "files": [{"path": text}]},
        {**asked, "files": text},
        {"question": text * 400, "options": [text, "MRI"]},
    ]
    for fields in refused:
        values = {key: None for key in ORDER}
        values.update({"scan": file_ref(upload(server.url, planted_file)), **fields})
        result = call(server.url, "answer", [values[k] for k in ORDER])[1]
        assert result["ok"] is False and result["error"], fields
    answered = [file_ref(upload(server.url, planted_file)), text, [text, "MRI"], *NONE]
    assert call(server.url, "answer", answered)[1]["ok"] is True
    with httpx.Client() as http:  # a malformed raw call Gradio itself refuses
        http.post(server.url + "gradio_api/call/answer", json={"data": [1, 2]})
    log = server.log_text()[len(before) :]
    for planted in (PLANTED, "PATIENT", *planted_identifiers):
        assert planted not in log, planted
    assert "Traceback" not in log
    assert log.count("request refused: ") == len(refused)


def test_examples_keep_working_after_they_are_used_and_swept(tmp_path):
    """Gradio copies the example files into the upload folder: using one, or the age sweep,
    must not delete them (the next click would find nothing)."""
    from medr1_demo.web.uploads import Sweeper

    folder = tmp_path / "uploads"
    example = folder / ("e" * 64) / "ct-000000.dcm"
    upload = folder / ("a" * 64) / "upload-0123"
    for path in (example, upload):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    sweeper = Sweeper(folder, max_age=0, every=60, keep_names=["ct-000000.dcm"])
    assert sweeper.sweep() == 1
    assert example.exists() and not upload.exists() and not upload.parent.exists()
