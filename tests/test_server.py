"""A real `python app.py` on a tiny policy, driven through `gradio_client` as an API user would.

Run: `.venv/bin/python -m pytest tests/test_server.py -q`. The server is the session fixture
`app_server` (tests/conftest.py), shared with the browser test.
"""

import json
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AuthenticationError

from medr1_demo.protocol import MODES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def client(app_server) -> Client:
    return Client(app_server.url, verbose=False)


def ask(client: Client, path, options=("CT", "MRI", "X-Ray"), **extra) -> dict:
    return client.predict(
        scan=handle_file(str(path)),
        question="Which imaging modality is used?",
        options=list(options),
        api_name="/answer",
        **extra,
    )


def test_named_endpoints_are_listed(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/answer", "/answer_stream"} <= set(endpoints)
    parameters = [p["parameter_name"] for p in endpoints["/answer"]["parameters"]]
    in_order = (
        "scan question options modes frame window checks plane series policy compare "
        "files slice modality maps"
    )  # the order of docs/api.md's table
    assert parameters == in_order.split()
    stream = [p["parameter_name"] for p in endpoints["/answer_stream"]["parameters"]]
    assert stream == parameters


def test_a_multiframe_file_is_answered_at_the_slice_asked(client, multiframe_dicom):
    result = ask(client, multiframe_dicom, slice=4)
    assert result["ok"] and (result["scan"]["frame"], result["scan"]["frames"]) == (4, 15)
    twice = ask(client, multiframe_dicom, slice=4, frame=5)
    assert not twice["ok"] and "Give the slice once" in twice["error"]


def test_dicom_upload_answered_in_both_modes(client, ct_dicom):
    result = ask(client, ct_dicom)
    assert result["ok"] and result["done"] and result["error"] is None
    assert set(result["answers"]) == set(MODES)
    for answer in result["answers"].values():
        assert answer["tokens"] > 0 and answer["done"]
        assert answer["letter"] in (None, "A", "B", "C")
        assert answer["letter"] is not None or answer["problem"]
    assert result["scan"]["kind"] == "DICOM"
    assert result["options"] == {"A": "CT", "B": "MRI", "C": "X-Ray"}


def test_stream_endpoint_yields_growing_results(client, ct_dicom):
    job = client.submit(
        scan=handle_file(str(ct_dicom)),
        question="Which modality?",
        options=["CT", "MRI"],
        modes=[MODES[0]],
        api_name="/answer_stream",
    )
    final = job.result(timeout=60)
    updates = job.outputs()
    assert len(updates) >= 2 and final["done"] and not updates[0]["done"]
    tokens = [u["answers"][MODES[0]]["tokens"] for u in updates if u["answers"]]
    assert tokens == sorted(tokens) and tokens[-1] > tokens[0]


def test_bad_file_gets_a_clear_error_and_the_next_request_is_served(client, ct_dicom, tmp_path):
    bad = tmp_path / "report.pdf"
    bad.write_bytes(b"%PDF-1.4 not a scan at all")
    result = ask(client, bad)
    assert result["ok"] is False and result["answers"] == {}
    assert result["error"] and "Traceback" not in result["error"] and len(result["error"]) < 300
    assert ask(client, ct_dicom)["ok"]


def test_too_few_options_is_refused_plainly(client, ct_dicom):
    result = ask(client, ct_dicom, options=["CT"])
    assert result["ok"] is False and "2 to 8" in result["error"]


def test_extensionless_dicom_is_accepted(client, ct_dicom, tmp_path):
    bare = tmp_path / "IM000123"
    shutil.copy(ct_dicom, bare)
    result = ask(client, bare)
    assert result["ok"] and result["scan"]["kind"] == "DICOM"


def test_planted_identifiers_appear_nowhere(client, app_server, planted_dicom, planted_identifiers):
    result = ask(client, planted_dicom)
    assert result["ok"] and result["scan"]["burned_in_annotation"] is True
    shown = (json.dumps(result) + app_server.log_text()).lower()
    for identifier in planted_identifiers:
        assert identifier.lower() not in shown


def test_a_model_that_cannot_load_exits_with_a_message(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    run = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--model", str(missing), "--port", "7"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode != 0
    assert "Could not load the model" in run.stderr and "does not exist" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_uploads_are_deleted_once_older_than_the_cache_age(tiny_engine, ct_dicom, tmp_path):
    """In-process server with a 2-second upload lifetime: the upload is gone 4 seconds later."""
    import gradio as gr
    import pydicom

    from medr1_demo.config import AppConfig, DecodingConfig, ServerConfig
    from medr1_demo.web.layout import Backend, build_demo, configure_queue

    config = AppConfig(
        decoding=DecodingConfig(max_new_tokens_thinking=4, max_new_tokens_no_thinking=4),
        server=ServerConfig(cache_minutes=2 / 60),
    )
    probe = tmp_path / f"probe-{uuid.uuid4().hex}.dcm"
    ds = pydicom.dcmread(ct_dicom)
    ds.SeriesDescription = probe.stem  # unique bytes: a cache folder of its own
    ds.save_as(probe)
    backend = Backend(tiny_engine.info, tiny_engine.answer, tiny_engine.stream)
    demo = configure_queue(build_demo(backend, config), config)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=None, quiet=True)
    try:
        assert ask(Client(url, verbose=False), probe)["ok"]
        uploads = Path(gr.utils.get_upload_folder())
        assert list(uploads.rglob(probe.name))  # still there right after the answer
        time.sleep(4)
        assert not list(uploads.rglob(probe.name))
    finally:
        demo.close()


def test_basic_auth_keeps_the_page_and_api_closed(tiny_engine, ct_dicom):
    """With `--auth user:password` the API answers only a client that logs in."""
    from medr1_demo.config import AppConfig, DecodingConfig, ServerConfig
    from medr1_demo.web.layout import Backend, build_demo, configure_queue, launch_options

    config = AppConfig(
        decoding=DecodingConfig(max_new_tokens_thinking=4, max_new_tokens_no_thinking=4),
        server=ServerConfig(auth="clinic:s3cret-pass"),
    )
    backend = Backend(tiny_engine.info, tiny_engine.answer, tiny_engine.stream)
    demo = configure_queue(build_demo(backend, config), config)
    options = launch_options(config) | {"server_port": None, "quiet": True}
    _, url, _ = demo.launch(prevent_thread_lock=True, **options)
    try:
        with pytest.raises(AuthenticationError):
            Client(url, verbose=False)
        client = Client(url, auth=("clinic", "s3cret-pass"), verbose=False)
        assert ask(client, ct_dicom)["ok"]
    finally:
        demo.close()


def test_with_no_settings_the_bundled_demo_policy_is_served_and_labelled(tmp_path):
    from conftest import launch_app

    server = launch_app(tmp_path)  # no --model, no MEDR1_MODEL: the app's default
    try:
        page = ""
        for path in ("", "config"):  # the page, and the component values Gradio serves with it
            with urllib.request.urlopen(server.url + path, timeout=10) as response:
                page += response.read().decode("utf-8")
        assert "demo policy trained on synthetic phantoms" in page
        assert "untrained" not in page
        case = json.loads((ROOT / "assets" / "examples" / "examples.json").read_text())[1]
        result = Client(server.url, verbose=False).predict(
            scan=handle_file(str(ROOT / "assets" / "examples" / case["file"])),
            question=case["question"],
            options=case["options"],
            api_name="/answer",
        )
        assert result["ok"], result
        for mode in MODES:
            assert result["answers"][mode]["format_ok"], result["answers"][mode]
        assert result["answers"]["thinking"]["rationale"]
    finally:
        server.stop()
