"""The page in a real browser: Debian's chromium, driven by Playwright, against `python app.py`.

Run: `.venv/bin/python -m pytest tests/test_browser.py -q`; skipped where /usr/bin/chromium is
missing (`apt-get install -y chromium`). Leaves a screenshot in test-artifacts/browser.png.
"""

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
    ),
]


def dicom_example(fallback: Path) -> tuple[Path, str, str]:
    """A DICOM from the bundled gallery (file, question, options), else pydicom's CT slice."""
    index = ROOT / "assets" / "examples" / "examples.json"
    if index.exists():
        for entry in json.loads(index.read_text(encoding="utf-8")):
            if entry["file"].lower().endswith(".dcm"):
                return (
                    ROOT / "assets" / "examples" / entry["file"],
                    entry["question"],
                    "\n".join(entry["options"]),
                )
    return fallback, "Which imaging modality is used?", "CT\nMRI\nX-Ray\nUltrasound"


def _browser(playwright, tmp_path):
    """Debian's chromium with a fresh profile: no state from earlier runs."""
    return playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1400, "height": 1100},
    )


def _choose(page, elem_id: str, value: str) -> None:
    """Pick `value` in a Gradio dropdown."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(value)
    page.locator("ul[role=listbox] li", has_text=value).first.click()


def _wait_answered(page, column: str) -> None:
    page.wait_for_function(
        """sel => { const c = document.querySelector(sel + ' .medr1-card');
                    return c && /tokens/.test(c.textContent)
                           && !c.classList.contains('medr1-running'); }""",
        arg=column,
        timeout=60_000,
    )


def _open_and_ask(page, url: str, scan: Path, question: str, options: str) -> None:
    """Open the page, upload `scan`, wait for its preview and fill in the question."""
    page.goto(url)
    page.set_input_files("#scan-file input[type=file]", str(scan))
    page.wait_for_selector("#scan-preview img", timeout=20_000)
    page.fill("#question textarea", question)
    page.fill("#options textarea", options)


def test_page_answers_a_dicom_in_both_columns(app_server, ct_dicom, tmp_path):
    from playwright.sync_api import sync_playwright

    scan, question, options = dicom_example(ct_dicom)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = _browser(playwright, tmp_path)
        try:
            page = browser.new_page()
            _open_and_ask(page, app_server.url, scan, question, options)
            page.wait_for_selector("#asked .medr1-asked", timeout=10_000)
            page.click("#run")
            # Both columns finished: each card shows its token count and no "generating" chip.
            for column in ("#col-thinking", "#col-no-thinking"):
                page.wait_for_function(
                    """sel => { const c = document.querySelector(sel + ' .medr1-card');
                                return c && /tokens/.test(c.textContent)
                                       && !c.classList.contains('medr1-running'); }""",
                    arg=column,
                    timeout=30_000,
                )
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)
            for column in ("#col-thinking", "#col-no-thinking"):
                card = page.inner_text(f"{column} .medr1-card")
                assert "tokens" in card and "Waiting" not in card
            assert "Not for clinical use" in page.inner_text("body")
            assert page.inner_text("#model-panel")  # the model panel is filled
        finally:
            browser.close()
    assert (ARTIFACTS / "browser.png").stat().st_size > 10_000
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_page_shows_option_probabilities_and_both_checks(tmp_path):
    """On the bundled demo policy (the app's default): bars in both cards, two check verdicts."""
    from conftest import launch_app
    from playwright.sync_api import sync_playwright

    scan, question, options = dicom_example(None)
    server = launch_app(tmp_path)
    try:
        with sync_playwright() as playwright:
            browser = _browser(playwright, tmp_path)
            try:
                page = browser.new_page()
                _open_and_ask(page, server.url, scan, question, options)
                page.click("#run")
                for column in ("#col-thinking", "#col-no-thinking"):
                    page.wait_for_selector(f"{column} .medr1-probs .medr1-prob", timeout=30_000)
                bars = page.locator("#col-no-thinking .medr1-prob").count()
                assert bars == len(options.splitlines())
                assert page.locator("#col-no-thinking .medr1-prob.medr1-chosen").count() == 1
                for check in ("image", "order"):
                    item = page.locator(f'#col-no-thinking .medr1-check[data-check="{check}"]')
                    assert item.count() == 1 and item.inner_text().strip()
                page.screenshot(path=str(ARTIFACTS / "browser-checks.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.stop()


def test_the_picker_switches_policy_compares_two_and_survives_a_broken_one(tmp_path, release_cache):
    """The release's specialists from a hub cache, a bundled policy beside them, one broken."""
    from conftest import launch_app

    broken = tmp_path / "broken"
    shutil.copytree(next(release_cache.glob("models--*/snapshots/*/VQA_CT")), broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    config = tmp_path / "app.yaml"
    config.write_text(
        (ROOT / "configs" / "app.yaml").read_text(encoding="utf-8")
        + f"  - name: Broken policy\n    source: {broken}\n",
        encoding="utf-8",
    )
    scan, question, options = dicom_example(None)
    server = launch_app(
        tmp_path, "--config", str(config), extra={"HF_HUB_CACHE": str(release_cache)}
    )
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = _browser(playwright, tmp_path)
            try:
                page = browser.new_page()
                _open_and_ask(page, server.url, scan, question, options)
                _choose(page, "policy", "Broken policy")
                page.click("#run")
                page.wait_for_selector("#status .medr1-msg-error", timeout=60_000)
                assert "could not" in page.inner_text("#status").lower()
                _choose(page, "policy", "Med-R1 CT")
                _choose(page, "compare-with", "Demo policy (phantoms)")
                page.click("#run")
                _wait_answered(page, "#col-no-thinking")
                page.wait_for_function(
                    "() => /both policies|policies differ|cannot be compared/"
                    ".test(document.querySelector('#compare').textContent)",
                    timeout=60_000,
                )
                assert page.locator("#compare .medr1-card").count() == 2
                # The panel is updated by the last step of the answer, after the comparison.
                page.wait_for_function(
                    "() => document.querySelector('#model-panel').textContent"
                    ".includes('Med-R1 CT')",
                    timeout=60_000,
                )
                assert "bundled demo policy" not in page.inner_text("#model-panel")
                assert str(tmp_path) not in page.inner_text("body")  # no server path shown
                # (the file box holds its own upload URL, which the server refuses to serve)
                page.screenshot(path=str(ARTIFACTS / "browser-compare.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.stop()


def test_a_zipped_series_is_browsed_slice_by_slice_and_answered(tmp_path):
    from conftest import launch_app
    from test_series import marked_volume, write_series, zip_files

    archive = zip_files(tmp_path / "study.zip", write_series(tmp_path / "s", marked_volume(12)))
    server = launch_app(tmp_path)
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = _browser(playwright, tmp_path)
            try:
                page = browser.new_page()
                page.goto(server.url)
                page.set_input_files("#scan-file input[type=file]", str(archive))
                page.wait_for_selector("#scan-preview img", timeout=20_000)
                page.wait_for_selector("#slice", state="visible", timeout=20_000)
                assert "of 12" in page.inner_text("#slice")
                first = page.get_attribute("#scan-preview img", "src")
                number = page.locator("#slice input[type=number]")
                number.fill("2")
                number.press("Enter")
                page.locator("#slice input[type=range]").dispatch_event("pointerup")
                page.wait_for_function(
                    "old => document.querySelector('#scan-preview img').src !== old",
                    arg=first,
                    timeout=20_000,
                )
                page.locator("#plane label", has_text="coronal").click()
                page.wait_for_function(
                    "() => /of 32/.test(document.querySelector('#slice').textContent)",
                    timeout=20_000,
                )
                page.fill("#question textarea", "Which imaging modality is this?")
                page.fill("#options textarea", "CT\nMRI\nX-Ray\nUltrasound")
                page.click("#run")
                _wait_answered(page, "#col-no-thinking")
                assert "Slice" in page.inner_text("body")
            finally:
                browser.close()
    finally:
        server.stop()


def test_an_example_can_be_clicked_again_after_it_was_answered(tmp_path):
    """The page deletes uploads once read; Gradio's copies of the examples must stay."""
    from conftest import launch_app
    from playwright.sync_api import sync_playwright

    server = launch_app(tmp_path)
    try:
        with sync_playwright() as playwright:
            browser = _browser(playwright, tmp_path)
            try:
                page = browser.new_page()
                page.goto(server.url)
                for _ in range(2):
                    page.get_by_text("CT · Disease Diagnosis").first.click()
                    page.wait_for_selector("#scan-preview img", timeout=20_000)
                    page.click("#run")
                    _wait_answered(page, "#col-no-thinking")
                    assert "no longer on the server" not in page.inner_text("#status")
                    page.locator("#scan-file button[aria-label*='Clear']").first.click()
                    page.wait_for_selector("#scan-preview .medr1-empty", timeout=10_000)
            finally:
                browser.close()
    finally:
        server.stop()


def test_page_runs_a_small_batch_and_downloads_the_csv(app_server, tmp_path):
    """The Batch tab: a CSV case list and a ZIP of phantom images in, the table filled, and the
    results CSV downloaded through the page's link (one row per case and mode)."""
    import csv
    import io
    import zipfile

    from playwright.sync_api import sync_playwright

    from trainer.phantoms.synth import write_dataset

    write_dataset(tmp_path / "data", 8, seed=5, test_fraction=0.5, image_size=64, dicom=False,
                  progress=False)  # fmt: skip
    records = json.loads((tmp_path / "data" / "test.json").read_text())[:4]
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:
        for record in records:
            archive.write(tmp_path / "data" / record["image"], record["image"])
    with open(tmp_path / "cases.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "question", "options", "answer"])
        for record in records:
            writer.writerow([record["image"], record["problem"], "", ""])  # no answers
    with sync_playwright() as playwright:
        browser = _browser(playwright, tmp_path)
        try:
            page = browser.new_page()
            page.goto(app_server.url)
            page.get_by_role("tab", name="Batch").click()
            page.set_input_files("#batch-cases input[type=file]", str(tmp_path / "cases.csv"))
            page.set_input_files("#batch-images input[type=file]", str(tmp_path / "images.zip"))
            for box in ("#batch-cases", "#batch-images"):  # both uploads arrived
                page.wait_for_selector(f"{box} .file-preview", timeout=20_000)
            page.click("#batch-run")
            page.wait_for_function(
                "() => /Finished: 4 of 4/.test(document.querySelector('#batch-status').innerText)",
                timeout=60_000,
            )
            assert page.locator("#batch-table tbody tr").count() == 4
            assert page.locator("#batch-table img").count() == 4  # thumbnails, inlined
            link = page.locator('#batch-downloads a[download$="results.csv"]').first
            with page.expect_download() as download:
                link.click()
            text = Path(download.value.path()).read_text(encoding="utf-8")
            page.screenshot(path=str(ARTIFACTS / "browser-batch.png"), full_page=True)
        finally:
            browser.close()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 8 and {r["case"] for r in rows} == {f"row {n}" for n in range(1, 5)}
    assert {r["image"] for r in rows} == {r["image"] for r in records}
    assert all(r["correct"] == "" for r in rows)  # no answer given: answered, not scored
