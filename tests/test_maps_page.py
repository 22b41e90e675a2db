"""Relevance maps on the page and in the API: off by default, two overlays when asked, and a map
that fails never costs the answers. The browser test runs the real app on the bundled demo policy."""

import json
import shutil
from pathlib import Path

import pytest

from medr1_demo.config import AppConfig, DecodingConfig
from medr1_demo.protocol import MODES
from medr1_demo.web.handlers import Backend, Handlers

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "assets" / "examples"
CHROMIUM = Path("/usr/bin/chromium")


def gallery_case():
    """The first gallery case with a drawn finding: (file, question, options)."""
    for entry in json.loads((GALLERY / "examples.json").read_text(encoding="utf-8")):
        if "regions" in entry:
            return GALLERY / entry["file"], entry["question"], entry["options"]
    raise AssertionError("the gallery has no case with a finding")


@pytest.fixture(scope="module")
def handlers(demo_engine) -> Handlers:
    config = AppConfig(decoding=DecodingConfig(max_new_tokens_thinking=96))
    backend = Backend(demo_engine.info, demo_engine.answer, demo_engine.stream)
    return Handlers(backend, config)


def test_api_returns_a_map_per_mode_only_when_asked(handlers):
    scan, question, options = gallery_case()
    plain = handlers.answer_api(str(scan), question, options, checks=[])
    assert plain["ok"] and all(a["relevance"] is None for a in plain["answers"].values())
    result = handlers.answer_api(str(scan), question, options, checks=[], maps=True)
    assert result["ok"]
    for mode in MODES:
        found = result["answers"][mode]["relevance"]
        assert found["method"] == "gradient x input" and found["letter"]
        assert found["rows"] == len(found["grid"]) and found["columns"] == len(found["grid"][0])
        assert abs(sum(map(sum, found["grid"])) - 1) < 1e-3
        assert result["answers"][mode]["letter"] == plain["answers"][mode]["letter"]
    text = json.dumps([a["relevance"] for a in result["answers"].values()])
    assert "/" not in text and ".dcm" not in text  # no server paths or file names in a map
    refused = handlers.answer_api(str(scan), question, options, maps="yes")
    assert not refused["ok"] and "`maps` must be true or false" in refused["error"]


def test_page_shows_two_overlays_after_the_answers(handlers):
    scan, question, options = gallery_case()
    updates = list(
        handlers.run(
            str(scan), None, "auto", question, "\n".join(options), list(MODES), [], maps=True
        )  # fmt: skip
    )
    shown = updates[-1][10]
    assert shown.count('<figure class="medr1-map"') == 2 and shown.count("data:image/png") == 2
    assert any("Computing where each mode looked" in u[10] for u in updates[:-1])
    unasked = list(handlers.run(str(scan), None, "auto", question, "\n".join(options),
                                list(MODES), []))[-1]  # fmt: skip
    assert unasked[10] == ""


def test_a_failing_map_is_a_sentence_beside_intact_answers(handlers, monkeypatch):
    from medr1_demo.policy import relevance

    scan, question, options = gallery_case()
    before = handlers.answer_api(str(scan), question, options, checks=[])

    def broken(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(relevance, "visual_relevance", broken)
    after = handlers.answer_api(str(scan), question, options, checks=[], maps=True)
    assert after["ok"]
    for mode in MODES:
        answer = after["answers"][mode]
        assert answer["letter"] == before["answers"][mode]["letter"]
        assert answer["raw"] == before["answers"][mode]["raw"]
        assert answer["relevance"]["grid"] is None
        assert "answer itself is unaffected" in answer["relevance"]["problem"]
    page = list(handlers.run(str(scan), None, "auto", question, "\n".join(options),
                             list(MODES), [], maps=True))[-1]  # fmt: skip
    assert "answer itself is unaffected" in page[10] and "tokens" in page[1]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")
def test_browser_shows_both_overlays_for_a_gallery_case_and_the_api_returns_them(tmp_path):
    from conftest import launch_app
    from gradio_client import Client, handle_file
    from playwright.sync_api import sync_playwright
    from test_browser import ARTIFACTS, _browser, _open_and_ask

    scan, question, options = gallery_case()
    server = launch_app(tmp_path)  # the bundled demo policy, the app's default
    try:
        with sync_playwright() as playwright:
            browser = _browser(playwright, tmp_path)
            try:
                page = browser.new_page()
                _open_and_ask(page, server.url, scan, question, "\n".join(options))
                page.check("#maps input[type=checkbox]")
                page.click("#run")
                page.wait_for_function(
                    "() => document.querySelectorAll('#relevance figure.medr1-map img')"
                    ".length === 2",
                    timeout=60_000,
                )
                for mode in MODES:
                    figure = page.locator(f'#relevance figure[data-mode="{mode}"]')
                    assert "Most relevance" in figure.inner_text()
                    assert figure.locator("img").evaluate("i => i.naturalWidth") > 50
                for column in ("#col-thinking", "#col-no-thinking"):  # the answers stay
                    assert "tokens" in page.inner_text(f"{column} .medr1-card")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "browser-maps.png"), full_page=True)
            finally:
                browser.close()
        client = Client(server.url, verbose=False)
        result = client.predict(
            scan=handle_file(str(scan)), question=question, options=options, checks=[],
            maps=True, api_name="/answer",
        )  # fmt: skip
        assert result["ok"]
        for mode in MODES:
            assert len(result["answers"][mode]["relevance"]["grid"]) >= 2
        assert str(tmp_path) not in server.log_text()
    finally:
        server.stop()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
