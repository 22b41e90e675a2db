"""The Batch tab and `/batch`: case lists and ZIPs read, a 40-case phantom batch answered through
a launched server with the accuracy `trainer eval` finds, broken records skipped, and `trainer
eval` over the shared batch core giving the same figures as the core itself.

Run: `.venv/bin/python -m pytest tests/test_batch.py -q` (CPU, offline; the bundled demo policy).
"""

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest

from medr1_demo.batch import outputs, scores
from medr1_demo.batch.cases import CaseListError, read_cases
from medr1_demo.protocol import MODES
from trainer.phantoms.synth import write_dataset

ROOT = Path(__file__).resolve().parent.parent
DEMO_POLICY = ROOT / "assets" / "demo-policy"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    """80 phantom cases with images; test.json holds 40 of them."""
    root = tmp_path_factory.mktemp("phantoms")
    write_dataset(root, 80, seed=3, test_fraction=0.5, image_size=64, dicom=False, progress=False)
    return root


def zip_of(root: Path, records: list[dict], out: Path, list_name: str | None = None) -> Path:
    """A ZIP of the records' images under a top folder `cases/` (and the list, when named)."""
    with zipfile.ZipFile(out, "w") as archive:
        for image in dict.fromkeys(r["image"] for r in records if "image" in r):
            if (root / image).exists():
                archive.write(root / image, f"cases/{image}")
        if list_name:
            archive.writestr(list_name, json.dumps(records))
    return out


def broken(records: list[dict]) -> list[dict]:
    """The records with three broken: an image not in the ZIP, a server path, a bad answer."""
    records = [dict(r) for r in records]
    records[3]["image"] = "Images/nowhere/missing.png"
    records[10]["image"] = "/etc/passwd"
    records[20]["solution"] = "<answer> G </answer>"
    return records


def test_case_lists_json_csv_and_broken_rows(phantoms, tmp_path):
    records = json.loads((phantoms / "test.json").read_text())[:6]
    images = zip_of(phantoms, records, tmp_path / "images.zip")
    rows = [
        {"image": records[0]["image"], "question": "Which modality?", "options": "CT|MRI|OCT",
         "answer": "MRI"},
        {"image": records[1]["image"], "question": "Which modality? A)CT, B)MRI", "options": "",
         "answer": "b"},
        {"image": records[2]["image"], "question": "Which modality?", "options": "CT|MRI",
         "answer": ""},  # no answer: answered, not scored
        {"image": records[3]["image"], "question": "Which modality?", "options": "CT|MRI",
         "answer": "PET"},
        {"image": "../../secret.png", "question": "Which?", "options": "CT|MRI", "answer": "A"},
    ]  # fmt: skip
    with open(tmp_path / "cases.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "question", "options", "answer"])
        writer.writeheader()
        writer.writerows(rows)
    folder = tmp_path / "private"
    folder.mkdir()
    cases = read_cases(tmp_path / "cases.csv", images, folder, 10, 1 << 30)
    assert [i.id for i in cases.items] == ["row 1", "row 2", "row 3"]
    assert [i.record.letter if i.record.solution else None for i in cases.items] == ["B", "B", None]
    assert cases.items[0].name == f"cases/{records[0]['image']}"  # the person's own path
    assert all(Path(i.record.image).parent == folder for i in cases.items)  # written privately
    assert cases.problems == [
        "row 4: answer 'PET' is not one of the options",
        "row 5: the image path must be a path inside the ZIP",
    ]
    # A Med-R1 JSON list inside the ZIP; the limit on cases refuses a longer list.
    records[3] = {**records[3], "image": "Images/nowhere/missing.png"}
    inside = zip_of(phantoms, records, tmp_path / "both.zip", "split.json")
    cases = read_cases(None, inside, folder, 10, 1 << 30)
    assert len(cases.items) == 5 and cases.rows == 6
    assert cases.problems == ["row 4: image Images/nowhere/missing.png is not in the ZIP"]
    with pytest.raises(CaseListError, match="at most 5"):
        read_cases(None, inside, folder, 5, 1 << 30)
    with pytest.raises(CaseListError, match="ZIP"):
        read_cases(tmp_path / "cases.csv", tmp_path / "cases.csv", folder, 10, 1 << 30)


def test_trainer_eval_gives_the_figures_of_the_shared_core(demo_engine, phantoms, tmp_path):
    """`trainer eval` is a thin command over medr1_demo.batch: its summary equals the core's
    loop and scoring run by hand on the same data, and it draws the figure."""
    from medr1_demo.batch.runner import Item, Settings, answer_rows, order_rows, plan_rows
    from medr1_demo.batch.sources import read_records
    from trainer.eval import evaluate

    data = phantoms / "test.json"
    out = tmp_path / "eval"
    argv = ["--model", str(DEMO_POLICY), "--data", str(data), "--out", str(out), "--quiet"]
    assert evaluate.main([*argv, "--device", "cpu"]) == 0
    written = json.loads((out / "summary.json").read_text())
    assert (out / "summary.png").stat().st_size > 1000

    records, problems, _ = read_records([str(data)], split="test")
    assert not problems and len(records) == 40
    items = [Item(f"test.json:{r.index}", "test.json", r) for r in records]
    rows = order_rows(plan_rows(items, MODES, set()), MODES)
    lines = [line for batch in answer_rows(demo_engine, rows, Settings(), {}) for line in batch]
    by_hand = scores.summarise(lines, MODES)
    for mode in MODES:
        assert written["results"][mode]["overall"] == by_hand["results"][mode]["overall"]
        assert written["results"][mode]["modality"] == by_hand["results"][mode]["modality"]
    assert written["agreement"] == by_hand["agreement"]
    # ... and each line is its own item's answer: a few items asked alone give the same text.
    from medr1_demo.batch.runner import picture

    for row in rows[:: len(rows) // 4][:4]:
        ((alone, _),) = demo_engine.complete([picture(row.item.record.image)], [row.prompt],
                                             max_new_tokens=Settings().max_new_tokens)  # fmt: skip
        (line,) = [x for x in lines if x["id"] == row.item.id and x["mode"] == row.mode]
        assert line["raw"] == alone


def test_batch_tab_reports_broken_rows_and_keeps_the_rest(demo_engine, phantoms, tmp_path):
    """The page's handler, on the real demo policy: 3 broken records of 40 are listed as
    `row N: reason`, the other 37 answered; the downloads hold the summary and its figure."""
    from medr1_demo.results import ModelInfo
    from medr1_demo.web.batch import BatchTab
    from medr1_demo.web.handlers import Backend

    records = broken(json.loads((phantoms / "test.json").read_text()))
    (tmp_path / "list.json").write_text(json.dumps(records))
    images = zip_of(phantoms, records, tmp_path / "images.zip")
    info = ModelInfo("demo", None, None, None, None, None, "cpu", "float32", 1, "image-only")
    backend = Backend(info=info, answer=demo_engine.answer, stream=demo_engine.stream,
                      answer_many=demo_engine.answer_many)  # fmt: skip
    tab = BatchTab(backend, uploads_folder=tmp_path / "uploads")
    (tmp_path / "uploads").mkdir()
    kept = {}  # the downloads as Gradio copies them after each update (the batch's folder goes)
    for status, table, files in tab.run(str(tmp_path / "list.json"), str(images), None,  # noqa: B007
                                        list(MODES), []):  # fmt: skip
        kept = {Path(f).name.split("-", 3)[-1]: Path(f).read_bytes() for f in files or ()}
    assert "Finished: 37 of 37 cases" in status and "3 record(s) skipped" in status
    for reason in ("row 4: image Images/nowhere/missing.png is not in the ZIP",
                   "row 11: the image path must be a path inside the ZIP",
                   "row 21: answer &#x27;G&#x27; is not one of the options A-"):  # fmt: skip
        assert reason in status
    assert table.count("<tr>") == 1 + 37 and "/etc/passwd" not in table
    assert str(tmp_path) not in table and "data:image/jpeg;base64," in table
    assert sorted(kept) == [
        "results.csv",
        "results.json",
        "summary.csv",
        "summary.json",
        "summary.png",
    ]
    (tmp_path / "results.csv").write_bytes(kept["results.csv"])
    accuracy = outputs.read_accuracy(tmp_path / "results.csv")
    summary = json.loads(kept["summary.json"])
    for mode in MODES:
        assert summary["results"][mode]["overall"]["items"] == 37
        assert summary["results"][mode]["overall"]["accuracy"] == pytest.approx(accuracy[mode])
    left = [p.name for p in (tmp_path / "uploads").rglob("*") if p.is_file()]
    assert left and all(name.startswith("medr1-batch-") for name in left)  # downloads only


# ------------------------------------------------------------------------ a launched server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py` serving the bundled demo policy (its default)."""
    from conftest import launch_app

    app = launch_app(tmp_path_factory.mktemp("batch-app"))
    yield app
    app.stop()


def call_batch(server, cases: Path, images: Path, **extra) -> Path:
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False)
    return Path(
        client.predict(
            cases=handle_file(str(cases)),
            images=handle_file(str(images)),
            modes=list(MODES),
            checks=[],
            api_name="/batch",
            **extra,
        )
    )


def test_server_batch_accuracy_equals_trainer_eval(server, phantoms, tmp_path):
    from trainer.eval import evaluate

    records = json.loads((phantoms / "test.json").read_text())
    assert len(records) == 40
    (tmp_path / "cases.json").write_text(json.dumps(records))
    images = zip_of(phantoms, records, tmp_path / "images.zip")
    result = call_batch(server, tmp_path / "cases.json", images)
    rows = list(csv.DictReader(io.StringIO(result.read_text(encoding="utf-8"))))
    assert len(rows) == 80 and {r["mode"] for r in rows} == set(MODES)
    assert all(r["image"].startswith("cases/Images/") for r in rows)  # the ZIP's own paths
    assert (
        str(phantoms) not in result.read_text() and str(server.upload_dir) not in result.read_text()
    )

    out = tmp_path / "eval"
    argv = ["--model", str(DEMO_POLICY), "--data", str(phantoms / "test.json"), "--out", str(out)]
    assert evaluate.main([*argv, "--quiet", "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    accuracy = outputs.read_accuracy(result)
    for mode in MODES:
        assert accuracy[mode] == pytest.approx(summary["results"][mode]["overall"]["accuracy"])
    # The batch's images went with it; nothing from the files reached the log.
    assert not [p for p in server.upload_dir.rglob("image-*")]
    log = server.log_text()
    assert "batch: 40 cases, 0 skipped" in log
    assert "Images/" not in log and records[0]["problem"][:30] not in log


def test_server_batch_with_three_broken_records(server, phantoms, tmp_path):
    records = broken(json.loads((phantoms / "test.json").read_text()))
    (tmp_path / "cases.json").write_text(json.dumps(records))
    images = zip_of(phantoms, records, tmp_path / "images.zip")
    result = call_batch(server, tmp_path / "cases.json", images)
    rows = list(csv.DictReader(io.StringIO(result.read_text(encoding="utf-8"))))
    answered = [r for r in rows if r["mode"]]
    assert len(answered) == 2 * 37 and len({r["case"] for r in answered}) == 37
    skipped = {r["case"]: r["problem"] for r in rows if not r["mode"]}
    assert list(skipped) == ["row 4", "row 11", "row 21"]
    assert skipped["row 4"] == "image Images/nowhere/missing.png is not in the ZIP"
    assert skipped["row 11"] == "the image path must be a path inside the ZIP"
    assert skipped["row 21"].startswith("answer 'G' is not one of the options A-")


def test_server_batch_refuses_bad_uploads_with_a_sentence(server, tmp_path):
    from gradio_client.exceptions import AppError

    (tmp_path / "notes.txt").write_text("just some text, not a case list")
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(AppError, match="damaged or incomplete"):
        call_batch(server, tmp_path / "notes.txt", tmp_path / "fake.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("readme.md", "nothing here")
    with pytest.raises(AppError, match="neither JSON nor a CSV"):
        call_batch(server, tmp_path / "notes.txt", tmp_path / "empty.zip")
    assert server.process.poll() is None  # still serving


def test_stopping_a_batch_keeps_its_finished_rows(demo_engine, phantoms, tmp_path, monkeypatch):
    """Stop (Gradio closes the handler's generator): the last downloads hold the rows finished
    so far, and the batch's images are deleted at once."""
    from medr1_demo.results import ModelInfo
    from medr1_demo.web import batch as batch_tab
    from medr1_demo.web.handlers import Backend

    monkeypatch.setattr(batch_tab, "UPDATE_SECONDS", 0.0)  # every finished case redraws
    records = json.loads((phantoms / "test.json").read_text())
    (tmp_path / "list.json").write_text(json.dumps(records))
    images = zip_of(phantoms, records, tmp_path / "images.zip")
    info = ModelInfo("demo", None, None, None, None, None, "cpu", "float32", 1, "image-only")
    backend = Backend(info=info, answer=demo_engine.answer, stream=demo_engine.stream,
                      answer_many=demo_engine.answer_many)  # fmt: skip
    (tmp_path / "uploads").mkdir()
    tab = batch_tab.BatchTab(backend, uploads_folder=tmp_path / "uploads")
    run = tab.run(str(tmp_path / "list.json"), str(images), None, list(MODES), [])
    for status, table, files in run:  # noqa: B007
        if "Running: 0 of" not in status and table.count("<tr>") >= 1 + 8:
            break
    run.close()
    assert "Running:" in status and "of 40 cases" in status
    shown = table.count("<tr>") - 1
    assert 8 <= shown < 40
    results = next(Path(f) for f in files if f.endswith("results.csv"))
    rows = list(csv.DictReader(io.StringIO(results.read_text(encoding="utf-8"))))
    assert len({r["case"] for r in rows}) == shown and len(rows) == 2 * shown
    assert not list((tmp_path / "uploads").rglob("image-*"))  # the batch's images are gone


def test_omnimedvqa_list_and_the_guard_serves_downloads_only(phantoms, tmp_path):
    """An OmniMedVQA QA list reads as the trainer reads it; inside the private upload folder the
    guard serves a batch's downloads (by their random names) and nothing else."""
    from medr1_demo.web.uploads import UploadGuard

    record = json.loads((phantoms / "test.json").read_text())[0]
    omni = [{"question": "Which modality?", "option_A": "CT", "option_B": "MRI", "gt_answer": "MRI",
             "image_path": record["image"], "modality_type": "MR", "question_type": "Modality",
             "question_id": "q1", "dataset": "phantoms"}]  # fmt: skip
    (tmp_path / "qa.json").write_text(json.dumps(omni))
    images = zip_of(phantoms, [record], tmp_path / "images.zip")
    (tmp_path / "private").mkdir()
    cases = read_cases(tmp_path / "qa.json", images, tmp_path / "private", 10, 1 << 30)
    (item,) = cases.items
    assert item.record.question == "Which modality? A)CT, B)MRI" and item.record.letter == "B"
    assert item.record.modality == "MRI" and not cases.problems

    folder = tmp_path / "uploads"
    guard = UploadGuard(None, folder)
    inside = f"/gradio_api/file={folder}/abc/"
    assert not guard.refused(inside + "medr1-batch-0123456789ab-results.csv")
    assert not guard.refused(inside + "medr1-batch-0123456789ab-summary.png")
    assert guard.refused(inside + "upload-0123456789abcdef")
    assert guard.refused(inside + "image-3.png")
    assert guard.refused(inside + "medr1-batch-0123456789ab-results.csv.png")
