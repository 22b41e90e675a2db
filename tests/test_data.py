"""Reading, validating, filtering and splitting training data; run with `pytest tests/test_data.py -q`.

Images are real PNG files written by the tests; bad records are planted next to good ones and
must be reported as `file:index: reason`.
"""

import json
from pathlib import Path

import pytest
from PIL import Image

from medr1_demo import protocol
from medr1_demo.batch import sources
from trainer.train import data, validate
from trainer.train.arguments import ScriptArguments


def write_png(path: Path, shade: int = 90, size: int = 40) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (shade, shade // 2, 255 - shade)).save(path)
    return str(path)


def medr1(image: str, question: str, options: list[str], letter: str) -> dict:
    return {
        "image": image,
        "problem": protocol.format_question(question, options),
        "solution": protocol.make_solution(letter),
    }


def omnimed(qid: str, image: str, modality: str, qtype: str, answer: str = "CT") -> dict:
    return {
        "dataset": "Phantom",
        "question_id": qid,
        "question_type": qtype,
        "question": f"What imaging technique is employed for obtaining image {qid}?",
        "gt_answer": answer,
        "image_path": image,
        "option_A": "MRI",
        "option_B": "CT",
        "option_C": "PET",
        "option_D": "X-ray",
        "modality_type": modality,
    }


def args(files, root=None, **overrides) -> ScriptArguments:
    return ScriptArguments(
        data_files=[str(f) for f in files], image_root=root, check_workers=2, **overrides
    )


@pytest.fixture
def planted(tmp_path):
    """A split file with one good record and one of each kind of bad record."""
    good = write_png(tmp_path / "Images" / "good.png")
    corrupt = tmp_path / "Images" / "corrupt.png"
    corrupt.write_bytes(Path(good).read_bytes()[:60])  # a PNG cut short
    records = [
        medr1("Images/good.png", "Which modality?", ["CT", "MRI"], "A"),  # 0 good
        medr1("Images/missing.png", "Which modality?", ["CT", "MRI"], "A"),  # 1 missing image
        medr1("Images/corrupt.png", "Which modality?", ["CT", "MRI"], "B"),  # 2 corrupt image
        {
            "image": "Images/good.png",
            "problem": "Which organ? A)Liver",
            "solution": "<answer> A </answer>",
        },
        medr1("Images/good.png", "Which organ?", ["Liver", "Lung", "Brain"], "D"),  # 4 letter
        medr1("Images/good.png", "Which modality?", ["CT", "MRI"], "B"),  # 5 duplicate of 0
        {"picture": "x.png"},  # 6 unknown fields
        medr1("Images/garbage.png", "Which modality?", ["CT", "MRI"], "A"),  # 7 not a picture
    ]
    (tmp_path / "Images" / "garbage.png").write_bytes(b"plain text, not an image" * 20)
    path = tmp_path / "CT(Computed Tomography)_train.json"
    path.write_text(json.dumps(records))
    return path


def test_planted_bad_records_are_reported_with_file_index_and_reason(planted):
    with pytest.raises(data.DataError) as caught:
        data.prepare_data(args([planted]), progress=False)
    lines = [str(p) for p in caught.value.problems]
    name = str(planted)
    expected = {
        1: "image not found",
        2: "image does not decode",
        3: "needs 2 to 8 answer options; got 1",
        4: "answer 'D' is not one of the options A-C",
        5: f"duplicate of {name}:0",
        6: "unknown record fields",
        7: "image does not decode (This file is not a scan",
    }
    assert len(lines) == len(expected), lines
    for index, reason in expected.items():
        assert any(line.startswith(f"{name}:{index}: ") and reason in line for line in lines), (
            index,
            lines,
        )
    assert not any(line.startswith(f"{name}:0:") for line in lines)


def test_skip_invalid_keeps_the_good_record(planted):
    prepared = data.prepare_data(args([planted], skip_invalid=True), progress=False)
    assert [(r.index, r.letter, r.modality) for r in prepared.train] == [(0, "A", "CT")]
    assert len(prepared.problems) == 7


def test_validate_command_prints_lines_and_exits_2(planted, capsys):
    code = validate.main(["--data", str(planted)])
    out = capsys.readouterr()
    assert code == 2
    assert f"{planted}:1: image not found" in out.out
    assert "7 invalid record(s)" in out.err


def test_training_stops_before_loading_a_model(planted, capsys):
    from trainer.train import grpo

    code = grpo.main(
        ["--config", "configs/tiny/grpo.yaml", "--data_files", str(planted)]
        + ["--model_name_or_path", "/no/such/model", "--output_dir", str(planted.parent / "run")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"{planted}:2: image does not decode" in err
    assert "--skip_invalid" in err
    assert not (planted.parent / "run").exists()


def test_medr1_sample_parses_and_absent_images_are_reported(tmp_path, medr1_sample):
    # The reference sample comes from the CT test split; named like it, the modality is inferred.
    split_file = tmp_path / "CT(Computed Tomography)_test.json"
    split_file.write_text(medr1_sample.read_text())
    records, problems, _ = sources.read_records([str(split_file)], str(tmp_path / "OmniMedVQA"))
    assert problems == [] and len(records) == 30
    assert all(r.n_options >= 2 and r.letter in "ABCD" and r.modality == "CT" for r in records)
    assert (
        records[0].question == json.loads(medr1_sample.read_text())[0]["problem"]
    )  # kept verbatim
    found = data.validate(records, progress=False)
    assert len(found) == 30 and all("image not found" in str(p) for p in found)


def test_omnimedvqa_filters_and_deterministic_split(tmp_path):
    image = write_png(tmp_path / "Images" / "Phantom" / "a.png")
    rows = [
        omnimed(f"q{i}", "Images/Phantom/a.png", "CT(Computed Tomography)", "Modality Recognition")
        for i in range(40)
    ]
    rows += [
        omnimed(
            f"m{i}", "Images/Phantom/a.png", "MR (Mag-netic Resonance Imaging)", "Disease Diagnosis"
        )
        for i in range(10)
    ]
    rows.append(
        omnimed("bad", "Images/Phantom/a.png", "X-Ray", "Lesion Grading", answer="Angiography")
    )
    file = tmp_path / "qa.json"
    file.write_text(json.dumps(rows))
    records, problems, _ = sources.read_records([str(file)], str(tmp_path))
    assert [str(p) for p in problems] == [
        f"{file}:50: gt_answer 'Angiography' is not one of the options"
    ]
    assert (
        records[0].image == image
        and records[0].letter == "B"
        and records[0].question_type == "Modality Recognition"
    )
    assert {r.modality for r in records} == {"CT", "MRI"}

    train = data.select(records, split="train")
    test = data.select(records, split="test")
    assert {r.question_id for r in train}.isdisjoint(r.question_id for r in test)
    assert len(train) + len(test) == 50 and 0 < len(test) < 25
    # The same questions land on the same side whatever the file order.
    reversed_file = tmp_path / "qa_reversed.json"
    reversed_file.write_text(json.dumps(rows[::-1]))
    again, _, _ = sources.read_records([str(reversed_file)], str(tmp_path))
    assert {r.question_id for r in data.select(again, split="test")} == {
        r.question_id for r in test
    }
    # Another seed gives another split.
    reseeded, _, _ = sources.read_records([str(file)], str(tmp_path), split_seed=1)
    assert {r.question_id for r in data.select(reseeded, split="test")} != {
        r.question_id for r in test
    }

    # The same QA file as training and evaluation data: evaluation reads the held-out side.
    both = data.prepare_data(
        args([file], str(tmp_path), eval_data_files=[str(file)], skip_invalid=True), progress=False
    )
    assert {r.question_id for r in both.train} == {r.question_id for r in train}
    assert {r.question_id for r in both.eval} == {r.question_id for r in test}

    mri = data.select(records, modalities=["MR (Mag-netic Resonance Imaging)"], split="all")
    assert len(mri) == 10 and all(r.question_type == "Disease Diagnosis" for r in mri)
    ct_modality = data.select(
        records, modalities=["ct"], question_types=["modality recognition"], split="all"
    )
    assert len(ct_modality) == 40
    with pytest.raises(data.DataError, match="unknown modality"):
        data.select(records, modalities=["PET-CT"])


def test_jsonl_and_saved_dataset_read_like_json(tmp_path):
    import datasets

    write_png(tmp_path / "Images" / "a.png")
    rows = [
        medr1("Images/a.png", f"Question {i}?", ["CT", "MRI", "PET"], "ABC"[i % 3])
        for i in range(5)
    ]
    as_json = tmp_path / "train.json"
    as_json.write_text(json.dumps(rows))
    as_jsonl = tmp_path / "train.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))

    def key(records):
        return [(r.index, r.image, r.question, r.solution) for r in records]

    from_json, json_problems, _ = sources.read_records([str(as_json)])
    from_jsonl, jsonl_problems, _ = sources.read_records([str(as_jsonl)])
    from_saved, saved_problems, _ = sources.read_records([str(saved)], str(tmp_path))
    assert json_problems == [] and saved_problems == []
    assert key(from_json) == key(from_jsonl) == key(from_saved)
    assert [str(p) for p in jsonl_problems] == [
        f"{as_jsonl}:5: not valid JSON (Expecting property name enclosed in double quotes)"
    ]
    # A folder expands to its JSON / JSONL files and saved datasets.
    files, problems = sources.find_data_files([str(tmp_path)])
    assert problems == [] and sorted(p.name for p in files) == [
        "saved",
        "train.json",
        "train.jsonl",
    ]


def test_rows_follow_the_protocol_and_load_images_lazily(tmp_path):
    write_png(tmp_path / "Images" / "a.png", size=50)
    record_rows = [medr1("Images/a.png", "Which modality?", ["CT", "MRI"], "B")]
    record_rows.append(
        dict(medr1("Images/a.png", "Which organ?", ["Liver", "Lung"], "A"), rationale="Liver.")
    )
    file = tmp_path / "train.json"
    file.write_text(json.dumps(record_rows))
    prepared = data.prepare_data(args([file], mode=protocol.THINKING), sft=False, progress=False)
    dataset = data.build_dataset(prepared.train, protocol.THINKING, image_size=32)
    # Only paths and strings are stored: the image is opened when a row is read.
    assert set(dataset.column_names) == {
        "image_path",
        "question",
        "solution",
        "modality",
        "question_type",
    }
    row = dataset[0]
    assert row["prompt"] == protocol.build_messages(record_rows[0]["problem"], protocol.THINKING)
    assert row["image"].size == (32, 32) and row["image"].mode == "RGB"
    assert row["solution"] == "<answer> B </answer>"

    # Thinking-mode SFT learns the data's rationale; a record without one is reported.
    with pytest.raises(data.DataError) as caught:
        data.prepare_data(args([file], mode=protocol.THINKING), sft=True, progress=False)
    assert [str(p) for p in caught.value.problems] == [
        f"{file}:0: no rationale: thinking-mode SFT needs one (train no-thinking, or use data with rationales)"
    ]
    sft_rows = data.build_dataset(prepared.train, protocol.THINKING, 32, sft=True)
    assert sft_rows[1]["completion"] == [
        {"role": "assistant", "content": "<think>Liver.</think>\n<answer>A</answer>"}
    ]
    plain = data.build_dataset(prepared.train, protocol.NO_THINKING, 32, sft=True)
    assert plain[0]["completion"][0]["content"] == "<answer>B</answer>"


def test_both_modes_give_one_row_per_template(tmp_path):
    write_png(tmp_path / "Images" / "a.png", size=40)
    rows = [dict(medr1("Images/a.png", "Which organ?", ["Liver", "Lung"], "A"), rationale="Liver.")]
    file = tmp_path / "train.json"
    file.write_text(json.dumps(rows))
    prepared = data.prepare_data(args([file], mode=data.BOTH), sft=True, progress=False)
    dataset = data.build_dataset(prepared.train, data.BOTH, image_size=32, sft=True)
    assert len(dataset) == 2 and "mode" in dataset.column_names
    thinking, plain = dataset[0], dataset[1]
    assert (thinking["mode"], plain["mode"]) == (protocol.THINKING, protocol.NO_THINKING)
    assert thinking["prompt"] == protocol.build_messages(rows[0]["problem"], protocol.THINKING)
    assert plain["prompt"] == protocol.build_messages(rows[0]["problem"], protocol.NO_THINKING)
    assert thinking["completion"][0]["content"] == "<think>Liver.</think>\n<answer>A</answer>"
    assert plain["completion"][0]["content"] == "<answer>A</answer>"
    with pytest.raises(ValueError, match="mode must be one of"):
        data.build_dataset(prepared.train, "fast")


def test_no_data_is_a_clear_error(tmp_path):
    with pytest.raises(data.DataError, match="no training data"):
        data.prepare_data(ScriptArguments(), progress=False)
    with pytest.raises(data.DataError, match="no training data found"):
        data.prepare_data(args([tmp_path / "absent.json"]), progress=False)


def test_synthetic_split_folders_and_dicom_images(tmp_path):
    from trainer.phantoms.synth import write_dataset

    write_dataset(tmp_path, 16, seed=0, image_size=48, dicom=True, progress=False)
    # Med-R1's layout: a folder of per-modality split files, images under the data root.
    folder = tmp_path / "Splits" / "modality" / "train"
    prepared = data.prepare_data(args([folder], str(tmp_path)), progress=False)
    by_file = {Path(r.source).name: r.modality for r in prepared.train}
    assert by_file["CT_train.json"] == "CT" and by_file["X-Ray_train.json"] == "X-Ray"
    assert len(prepared.train) == len(json.loads((tmp_path / "train.json").read_text()))

    # DICOM images are checked (and read) by the scan reader, not by PIL.
    rows = [
        dict(r, image=r["dicom"])
        for r in json.loads((tmp_path / "train.json").read_text())
        if r.get("dicom")
    ]
    dicom_file = tmp_path / "dicom.json"
    dicom_file.write_text(json.dumps(rows))
    dicom_data = data.prepare_data(args([dicom_file], image_check="full"), progress=False)
    assert len(dicom_data.train) == len(rows) > 0
    row = data.build_dataset(dicom_data.train, protocol.NO_THINKING, image_size=32)[0]
    assert row["image"].size == (32, 32) and row["image"].mode == "RGB"
