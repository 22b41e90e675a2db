"""The page's handlers, called directly on a real tiny engine and real DICOM files.

Run: `.venv/bin/python -m pytest tests/test_ui.py -q`. Also checks that the page's modules never
import torch, and that an upload is read once however often it is shown and asked about.
"""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medr1_demo.config import AppConfig, DecodingConfig
from medr1_demo.protocol import MODES, NO_THINKING, THINKING
from medr1_demo.web.layout import Backend, Handlers, load_examples

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def handlers(tiny_engine) -> Handlers:
    config = AppConfig(
        decoding=DecodingConfig(max_new_tokens_thinking=24, max_new_tokens_no_thinking=8)
    )
    backend = Backend(tiny_engine.info, tiny_engine.answer, tiny_engine.stream)
    return Handlers(backend, config)


def _check_answered(result: dict, n_options: int) -> None:
    assert result["ok"] and result["error"] is None and result["done"]
    assert set(result["answers"]) == set(MODES)
    for answer in result["answers"].values():
        assert answer["done"] and answer["tokens"] > 0
        if answer["letter"] is None:  # an untrained policy: the reason must be given instead
            assert answer["problem"]
        else:
            index = "ABCDEFGH".index(answer["letter"])
            assert index < n_options
            assert answer["option_text"] == list(result["options"].values())[index]


def test_ui_modules_do_not_import_torch():
    code = (
        "import sys, medr1_demo.web.layout, medr1_demo.web.handlers, medr1_demo.web.render, medr1_demo.config\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dicom_answered_in_both_modes(handlers, ct_dicom):
    result = handlers.answer_api(str(ct_dicom), "Which imaging modality is this?", ["CT", "MRI"])
    _check_answered(result, 2)
    assert result["scan"]["kind"] == "DICOM"
    assert result["question"] == "Which imaging modality is this?"
    assert result["model"]["parameters"] == handlers.backend.info.parameters


def test_page_run_streams_into_both_columns(handlers, ct_dicom):
    updates = list(
        handlers.run(str(ct_dicom), 1, "auto", "Which modality?", "CT\nMRI\nX-Ray", list(MODES))
    )
    assert len(updates) >= 3  # "answering", at least one partial, the final
    status, think, rationale, think_raw, plain, plain_raw, agree, asked, _, panel = updates[-1][:10]
    assert "medr1-msg-error" not in status
    for card in (think, plain):
        assert "tokens" in card and "Waiting" not in card and "generating" not in card
    assert "A)CT, B)MRI, C)X-Ray" in asked
    # The banner gives the verdict the API gives for the same question (greedy: same answers).
    verdict = handlers.answer_api(str(ct_dicom), "Which modality?", ["CT", "MRI", "X-Ray"])["agree"]
    expected = {True: "Both modes agree", False: "The modes disagree", None: "cannot be judged"}
    assert expected[verdict] in agree and "answering" not in agree
    assert "<pre" in think_raw and "<pre" in plain_raw


def test_one_mode_leaves_the_other_column_unrequested(handlers, ct_dicom):
    final = list(handlers.run(str(ct_dicom), 1, "auto", "Which?", "CT\nMRI", [NO_THINKING]))[-1]
    assert "Not requested" in final[1] and "tokens" in final[4]
    result = handlers.answer_api(str(ct_dicom), "Which?", ["CT", "MRI"], [THINKING])
    assert list(result["answers"]) == [THINKING]


def test_pasted_omnimedvqa_question_is_split(handlers, ct_dicom):
    question, options, message = handlers.split("Which organ is shown? A)Liver, B)Lung, C)Brain")
    assert (question, options, message) == ("Which organ is shown?", "Liver\nLung\nBrain", "")
    result = handlers.answer_api(str(ct_dicom), "Which organ? A)Liver, B)Lung", None)
    assert result["ok"] and result["options"] == {"A": "Liver", "B": "Lung"}


@pytest.mark.parametrize(
    "scan, question, options, modes, expected",
    [
        # no scan at all
        (None, "Which?", ["CT", "MRI"], MODES, "Upload a scan first"),
        # a text file is not a scan
        ("text", "Which?", ["CT", "MRI"], MODES, None),
        # no question
        ("ct", "   ", ["CT", "MRI"], MODES, "Type a question"),
        # one option only
        ("ct", "Which?", ["CT"], MODES, "2 to 8 answer options"),
        # nine options
        ("ct", "Which?", [f"o{i}" for i in range(9)], MODES, "2 to 8 answer options"),
        # a question longer than the cap
        ("ct", "x" * 2001, ["CT", "MRI"], MODES, "the limit is 2000"),
        # no mode chosen
        ("ct", "Which?", ["CT", "MRI"], [], "Choose at least one mode"),
        # a mode that does not exist
        ("ct", "Which?", ["CT", "MRI"], ["fast"], "Unknown mode"),
        # options that are neither a list nor lines
        ("ct", "Which?", {"A": "CT"}, MODES, "list of texts"),
    ],
)
def test_bad_requests_get_plain_messages(
    handlers, ct_dicom, tmp_path, scan, question, options, modes, expected
):
    if scan == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a scan")
        scan = str(path)
    elif scan == "ct":
        scan = str(ct_dicom)
    result = handlers.answer_api(scan, question, options, modes)
    assert result["ok"] is False and result["answers"] == {}
    assert result["error"] and "Traceback" not in result["error"]
    if expected:
        assert expected in result["error"]
    # The page shows the same sentence in its status box, and the columns stay empty.
    page = list(
        handlers.run(
            scan,
            1,
            "auto",
            question,
            "\n".join(options) if isinstance(options, list) else "",
            modes,
        )
    )
    assert "medr1-msg-error" in page[-1][0]


def test_generation_failure_is_a_message_and_the_next_request_is_served(handlers, ct_dicom):
    # A real out-of-memory or CUDA failure cannot be provoked on a CPU; the engine's error type
    # is raised from the stream instead, and then the real engine answers again.
    from medr1_demo.policy.engine import GenerationError

    def failing_answer(*args, **kwargs):
        raise GenerationError("the GPU ran out of memory")

    def failing_stream(*args, **kwargs):
        yield from [failing_answer()]

    backend = Backend(handlers.backend.info, failing_answer, failing_stream)
    broken = Handlers(backend, handlers.config)
    result = broken.answer_api(str(ct_dicom), "Which?", ["CT", "MRI"])
    assert result["ok"] is False and "ran out of memory" in result["error"]
    status = list(broken.run(str(ct_dicom), 1, "auto", "Which?", "CT\nMRI", list(MODES)))[-1][0]
    assert "ran out of memory" in status
    _check_answered(handlers.answer_api(str(ct_dicom), "Which?", ["CT", "MRI"]), 2)


def test_new_scan_shows_frames_and_window_for_a_multiframe_dicom(handlers, multiframe_dicom):
    preview, series, frames, plane, window, meta, notes = handlers.new_scan(str(multiframe_dicom))
    assert 'src="data:image/png;base64,' in preview
    assert frames["visible"] is True and frames["maximum"] > 1
    assert series["visible"] is False and plane["visible"] is False  # one file, no volume
    preview2, slider, meta2, notes2 = handlers.show_scan(
        str(multiframe_dicom), None, 1, "auto", None
    )
    assert 'src="data:image/png;base64,' in preview2 and preview2 != preview


def test_png_has_no_frame_slider_or_window(handlers, tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (120, 30, 30)).save(path)
    preview, series, frames, plane, window, meta, notes = handlers.new_scan(str(path))
    assert "data:image/png" in preview
    assert frames["visible"] is False and window["visible"] is False


def test_burned_in_identifiers_warning(handlers, planted_dicom):
    notes = handlers.new_scan(str(planted_dicom))[-1]
    assert "burned into the picture" in notes and "medr1-msg-error" in notes


def test_unreadable_upload_is_a_message(handlers, tmp_path):
    path = tmp_path / "broken.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + b"\x01" * 64)
    preview, series, frames, plane, window, meta, notes = handlers.new_scan(str(path))
    assert "medr1-msg-error" in notes and "Traceback" not in notes
    assert "Upload a scan" in preview


def test_planted_identifiers_reach_neither_page_nor_api_nor_log(
    handlers, planted_dicom, planted_identifiers, caplog
):
    with caplog.at_level(logging.DEBUG):
        page = handlers.new_scan(str(planted_dicom))
        result = handlers.answer_api(str(planted_dicom), "Which?", ["CT", "MRI"])
    shown = json.dumps([str(part) for part in page]) + json.dumps(result) + caplog.text
    assert result["ok"]
    for identifier in planted_identifiers:
        assert identifier.lower() not in shown.lower()


def test_examples_load_with_existing_files():
    rows, labels = load_examples()
    assert rows
    for files, question, options in rows:  # the upload takes several files: a list of one here
        assert len(files) == 1 and Path(files[0]).is_file()
        assert question and len(options.splitlines()) >= 2
    assert len(rows) == len(labels)


def test_an_upload_is_read_once_however_often_it_is_shown_and_asked(tiny_engine, tmp_path):
    from medr1_demo.scan.cache import ScanCache
    from medr1_demo.scan.reader import open_upload

    opened = []

    def counting_open(paths, series=None):
        opened.append(paths)
        return open_upload(paths, series=series)

    source = get_testdata_file("rtdose.dcm", download=False)  # 15 frames
    uploads = tmp_path / "uploads"
    (uploads / "0a1b").mkdir(parents=True)
    upload = uploads / "0a1b" / "upload-1234"
    upload.write_bytes(Path(source).read_bytes())
    backend = Backend(tiny_engine.info, tiny_engine.answer, tiny_engine.stream)
    config = AppConfig(
        decoding=DecodingConfig(max_new_tokens_thinking=4, max_new_tokens_no_thinking=4)
    )
    handlers = Handlers(backend, config, ScanCache(upload_opener=counting_open), uploads=uploads)
    handlers.new_scan(str(upload))
    assert not upload.exists() and not (uploads / "0a1b").exists()  # deleted once read
    handlers.show_scan(str(upload), None, 3, "full range", None)  # a frame and a window change
    handlers.show_scan(str(upload), None, 3, "auto", None)
    result = handlers.answer_api(str(upload), "Which?", ["CT", "MRI"], frame=2)
    assert result["ok"] and result["scan"]["frame"] == 2
    assert len(opened) == 1  # one read, from disk; the rest from memory

    assert str(upload) in handlers.scans
    handlers.views.release([str(upload)])  # the page replaced the upload, or was closed
    assert str(upload) not in handlers.scans and handlers.scans.nbytes == 0
    result = handlers.answer_api(str(upload), "Which?", ["CT", "MRI"])
    assert not result["ok"] and "upload it again" in result["error"]


def test_files_outside_the_upload_folder_are_never_deleted(tiny_engine, ct_dicom, tmp_path):
    backend = Backend(tiny_engine.info, tiny_engine.answer, tiny_engine.stream)
    handlers = Handlers(backend, uploads=tmp_path / "uploads")
    handlers.new_scan(str(ct_dicom))
    assert Path(ct_dicom).exists()


def test_old_scans_leave_the_cache(tmp_path):
    import time

    from medr1_demo.scan.cache import ScanCache

    path = tmp_path / "scan.png"
    Image.new("L", (32, 32), 90).save(path)
    cache = ScanCache(max_age=0.05)
    cache.open(str(path))
    path.unlink()
    time.sleep(0.1)
    with pytest.raises(FileNotFoundError):
        cache.open(str(path))


def test_the_scan_cache_is_bounded(tmp_path):
    from medr1_demo.scan.cache import ScanCache

    cache = ScanCache(max_entries=2)
    files = []
    for index in range(3):
        path = tmp_path / f"scan-{index}.png"
        Image.new("L", (32 + index, 32), index * 60).save(path)
        files.append(path)
        cache.open(str(path))
    assert len(cache) == 2
    assert cache.open(str(files[2])).picture().image.size == (34, 32)  # the newest stays
    tight = ScanCache(max_bytes=1)  # over the byte budget: only the scan in use is kept
    for path in files:
        tight.open(str(path))
    assert len(tight) == 1
