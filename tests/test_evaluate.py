"""Tests of `python -m trainer eval` and `python -m trainer matrix` (CPU, tiny models, phantom data).

Run: `.venv/bin/python -m pytest tests/test_evaluate.py -q`

Besides the random tiny policy, one test model is "programmed": its weights are set so that greedy
decoding always answers `<answer>A</answer>` (the `answer_a` fixture, conftest.py). Its accuracy on any data
is then known without running it (the share of items whose answer is A), which lets the end-to-end
and matrix tests check the numbers against the data itself.
"""

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from medr1_demo.batch import scores
from medr1_demo.policy.engine import PolicyEngine
from medr1_demo.protocol import (
    MEDR1_EVAL_PROMPTS,
    MODES,
    NO_THINKING,
    THINKING,
    ZERO_SHOT_PROMPTS,
    build_prompt,
    solution_letter,
)
from trainer.eval import evaluate, matrix
from trainer.eval.run_folder import RESULTS, RunMismatch, read_results
from trainer.phantoms.synth import write_dataset

MODALITIES = ("CT", "MRI", "OCT")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    write_dataset(root, 40, seed=3, test_fraction=0.5, image_size=64, dicom=False, progress=False)
    return root


def split_file(root: Path, modality: str) -> Path:
    return root / "Splits" / "modality" / "test" / f"{modality}_test.json"


def share_of_a(path: Path) -> float:
    """Accuracy of an always-A policy on a split file, read from the data itself (percent)."""
    records = json.loads(path.read_text())
    return 100 * sum(solution_letter(r["solution"]) == "A" for r in records) / len(records)


class CountingEngine:
    """A real engine that records the prompts it is asked, and can stop after some answers."""

    def __init__(self, engine, stop_after: int | None = None):
        self.engine, self.stop_after = engine, stop_after
        self.prompts, self.answered = [], 0

    def __getattr__(self, name):  # processor, info, ... of the real engine
        return getattr(self.engine, name)

    def complete_many(self, requests, **kwargs):
        def recorded():
            for image, prompt, limit in requests:
                self.prompts.append(prompt)
                yield image, prompt, limit

        for finished in self.engine.complete_many(recorded(), **kwargs):
            if self.stop_after is not None and self.answered >= self.stop_after:
                raise KeyboardInterrupt  # as if the run were killed here
            self.answered += len(finished)
            yield finished


# ---------------------------------------------------------------------------------- scoring


def line(id_, file, modality, qtype, mode, raw, answer, n_options=4):
    row = {"id": id_, "file": file, "modality": modality, "question_type": qtype, "mode": mode}
    return {**row, **scores.score(raw, mode, answer, n_options), "answer": answer}


def hand_checked_results():
    """Five items over two files; each raw text chosen for what it tests."""
    a, b = "a.json", "b.json"
    think = "<think>bone ring</think><answer>{}</answer>"
    return [
        # a:0 answer A: both modes right and in format; official no-thinking wrong (tagged text)
        line("a:0", a, "CT", "Modality Recognition", THINKING, think.format("A"), "A"),
        line("a:0", a, "CT", "Modality Recognition", NO_THINKING, "<answer>A</answer>", "A"),
        # a:1 answer B: lower-case letter read as B (official regex keeps 'b': wrong); a bare
        # "B" has no tag, so it is wrong here but right under the official raw comparison
        line("a:1", a, "CT", "Disease Diagnosis", THINKING, think.format(" b "), "B"),
        line("a:1", a, "CT", "Disease Diagnosis", NO_THINKING, "B", "B"),
        # a:2 answer C: thinking answers D (wrong, in format); no-thinking "C) CT" is C
        line("a:2", a, "CT", "Disease Diagnosis", THINKING, think.format("D"), "C"),
        line("a:2", a, "CT", "Disease Diagnosis", NO_THINKING, "<answer>C) CT</answer>", "C"),
        # b:0 answer A with 3 options: no output; "D" is not an option
        line("b:0", b, "MRI", "Disease Diagnosis", THINKING, "", "A", 3),
        line("b:0", b, "MRI", "Disease Diagnosis", NO_THINKING, "<answer>D</answer>", "A", 3),
    ]


def test_summary_numbers_by_hand():
    summary = scores.summarise(hand_checked_results())
    think, plain = summary["results"][THINKING], summary["results"][NO_THINKING]
    # thinking: right on a:0, a:1; wrong on a:2, b:0
    assert think["file"]["a.json"] == pytest.approx(
        {"items": 3, "correct": 2, "accuracy": 2 / 3, "format_kept": 1.0}
    )
    assert think["file"]["b.json"]["accuracy"] == 0.0
    assert think["overall"]["accuracy"] == 0.5  # 2 of 4, sample-weighted
    assert think["mean_over_file"] == pytest.approx((2 / 3 + 0) / 2)  # each file counts once
    assert think["overall"]["format_kept"] == 0.75  # all but the empty output
    # no-thinking: right on a:0 and a:2 only
    assert plain["modality"]["CT"]["accuracy"] == pytest.approx(2 / 3)
    assert plain["question_type"]["Disease Diagnosis"]["correct"] == 1  # a:2 of a:1, a:2, b:0
    assert plain["question_type"]["Modality Recognition"]["accuracy"] == 1.0
    assert plain["mean_over_question_type"] == pytest.approx((1 + 1 / 3) / 2)
    assert plain["overall"]["format_kept"] == 0.75  # "B" alone breaks the format
    # agreement: both modes gave a letter on a:0 (A, A), a:2 (D, C); not on a:1 or b:0
    assert summary["agreement"] == {
        "modes": [THINKING, NO_THINKING], "items": 4, "compared": 2, "same": 1, "rate": 0.5,
    }  # fmt: skip


def test_official_scoring_reproduces_the_raw_comparison():
    official = scores.summarise(hand_checked_results(), scoring=scores.OFFICIAL)["results"]
    # thinking: regex \w+ inside the tag must equal the letter: a:0 only (a:1 reads 'b')
    assert official[THINKING]["overall"]["correct"] == 1
    # no-thinking: only the bare "B" equals its letter; every tagged answer counts as wrong
    assert official[NO_THINKING]["overall"]["correct"] == 1
    assert official[NO_THINKING]["file"]["a.json"]["correct"] == 1


# (completion, mode, answer C correct under: qwen2-vl scripts, qwen2.5-vl scripts)
OFFICIAL_CASES = [
    # as trained, no-thinking: the Qwen2-VL script compares the raw text, so it is wrong there
    ("<answer>C</answer>", NO_THINKING, False, True),
    # a bare letter: both scripts compare the raw text
    ("C", NO_THINKING, True, True),
    # "answer" appears but no tag: Qwen2.5-VL's regex finds nothing, so wrong
    ("The answer is C", NO_THINKING, False, False),
    # spaces inside the tag are allowed by the regex
    ("<answer> C </answer>", NO_THINKING, False, True),
    # a lower-case letter is not the letter
    ("<answer>c</answer>", NO_THINKING, False, False),
    # a trailing newline breaks the raw comparison
    ("C\n", NO_THINKING, False, False),
    # thinking: both scripts take the tag's letter
    ("<think>round</think><answer>C</answer>", THINKING, True, True),
    # thinking without a tag: nothing extracted in either
    ("C", THINKING, False, False),
]


@pytest.mark.parametrize(("text", "mode", "qwen2", "qwen25"), OFFICIAL_CASES)
def test_both_released_scoring_rules(text, mode, qwen2, qwen25):
    assert scores.official_correct(text, mode, "C", scores.OFFICIAL_QWEN2_VL) is qwen2
    assert scores.official_correct(text, mode, "C", scores.OFFICIAL_QWEN2_5_VL) is qwen25
    line_ = scores.score(text, mode, "C", 4)
    assert (line_["correct_official"], line_["correct_official_qwen2.5-vl"]) == (qwen2, qwen25)
    # a line written before the Qwen2.5-VL rule existed is scored from its raw text
    old = {"raw": text, "mode": mode, "answer": "C", "correct_official": qwen2}
    assert scores.is_correct(old, scores.OFFICIAL_QWEN2_5_VL) is qwen25


def test_zero_shot_replies_are_read_as_a_bare_letter():
    read = [scores.score(t, NO_THINKING, "C", 4, ZERO_SHOT_PROMPTS) for t in ("C", "C) CT", "")]
    assert [(r["prediction"], r["format_kept"]) for r in read] == [
        ("C", True), ("C", False), (None, False),
    ]  # fmt: skip
    assert scores.score("<answer>C</answer>", NO_THINKING, "C", 4, ZERO_SHOT_PROMPTS)["correct"]
    assert scores.scoring_for(True) == scores.scoring_for("qwen2-vl") == scores.OFFICIAL
    with pytest.raises(ValueError, match="qwen2-vl, qwen2.5-vl"):
        scores.scoring_for("qwen3")


# ------------------------------------------------------------------------------- end to end


def test_eval_command_scores_a_known_policy(answer_a, phantoms, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for modality in MODALITIES:
        shutil.copy(split_file(phantoms, modality), data)
    broken = json.loads((data / "CT_test.json").read_text())
    broken += [
        {**broken[0], "image": "Images/CT/no-such-scan.png"},
        {**broken[0], "solution": "<answer> F </answer>"},  # not one of the options
    ]
    (data / "CT_test.json").write_text(json.dumps(broken))
    out = tmp_path / "out"
    argv = ["--model", str(answer_a), "--data", str(data), "--image_root", str(phantoms)]
    argv += ["--out", str(out), "--batch_size", "4", "--max_new_tokens", "12", "--quiet"]
    assert evaluate.main(argv) == 0
    printed = capsys.readouterr()
    assert "Overall, sample-weighted" in printed.out

    summary = json.loads((out / "summary.json").read_text())
    files = summary["results"][THINKING]["file"]
    assert set(files) == {f"{m}_test.json" for m in MODALITIES}
    for modality in MODALITIES:  # the always-A policy scores the share of A answers
        expected = share_of_a(split_file(phantoms, modality))
        for mode in (THINKING, NO_THINKING):
            got = summary["results"][mode]["file"][f"{modality}_test.json"]["accuracy"]
            assert 100 * got == pytest.approx(expected)
    assert summary["results"][THINKING]["overall"]["format_kept"] == 0.0  # no <think>
    assert summary["results"][NO_THINKING]["overall"]["format_kept"] == 1.0
    assert summary["agreement"]["rate"] == 1.0
    ct = str(data / "CT_test.json")
    n_ct = len(broken) - 2
    assert summary["skipped"]["count"] == 2
    assert any(r.startswith(f"{ct}:{n_ct}: image not found") for r in summary["skipped"]["records"])
    assert any(r.startswith(f"{ct}:{n_ct + 1}: answer 'F'") for r in summary["skipped"]["records"])
    assert "skipped" in printed.err

    # The summary is exactly what the JSON Lines file gives.
    results = read_results(out / RESULTS)
    assert len(results) == 2 * summary["items"]
    assert {k: summary[k] for k in ("results", "agreement")} == {
        k: scores.summarise(results)[k] for k in ("results", "agreement")
    }
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    overall = [r for r in rows if r["group"] == "all items (sample-weighted)"]
    assert [float(r["accuracy"]) for r in overall] == [
        pytest.approx(summary["results"][m]["overall"]["accuracy"]) for m in (THINKING, NO_THINKING)
    ]

    # Official scoring from the same results (nothing left to run): no-thinking drops to 0.
    assert evaluate.main([*argv, "--official_scoring"]) == 0
    official = json.loads((out / "summary_official.json").read_text())["results"]
    assert official[NO_THINKING]["overall"]["accuracy"] == 0.0
    assert official[THINKING]["overall"] == summary["results"][THINKING]["overall"]
    assert len(read_results(out / RESULTS)) == len(results)  # nothing was asked again


def test_resume_asks_only_for_what_is_left(tiny_engine, phantoms, tmp_path):
    items, problems = evaluate.collect_items(
        [str(split_file(phantoms, m)) for m in MODALITIES], str(phantoms)
    )
    assert not problems and len(items) >= 6
    settings = evaluate.Settings(batch_size=4, max_new_tokens=3, progress=False)
    run = {"model": "tiny", "max_new_tokens": 3, "image_size": 384}
    folder = tmp_path / "run"
    stopped = CountingEngine(tiny_engine, stop_after=8)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate(items, folder, lambda: stopped, settings, run)
    kept = len(read_results(folder / RESULTS))
    assert kept == stopped.answered >= 8  # every answer given was kept
    with open(folder / RESULTS, "a") as handle:
        handle.write('{"id": "CT_test.json:0", "mo')  # a line torn by the interruption

    again = CountingEngine(tiny_engine)
    results, _ = evaluate.evaluate(items, folder, lambda: again, settings, run)
    total = 2 * len(items)
    assert len(again.prompts) == again.answered == total - kept
    pairs = [(r["id"], r["mode"]) for r in results]
    assert len(pairs) == len(set(pairs)) == total
    assert (folder / RESULTS).read_text().endswith("}\n")
    # Rows are asked one mode after the other.
    thinking = ["Think through" in p for p in again.prompts]
    assert thinking == sorted(thinking, reverse=True)

    def no_model():
        raise AssertionError("a finished run must not load the model")

    results_again, _ = evaluate.evaluate(items, folder, no_model, settings, run)
    assert len(results_again) == total
    with pytest.raises(RunMismatch, match="max_new_tokens"):
        evaluate.evaluate(items, folder, no_model, settings, {**run, "max_new_tokens": 9})


def test_prompt_sets_are_asked_verbatim_and_never_mixed_in_one_folder(
    tiny_engine, phantoms, tmp_path
):
    items, _ = evaluate.collect_items([str(split_file(phantoms, "CT"))], str(phantoms), limit=2)
    settings = evaluate.Settings(
        batch_size=4, max_new_tokens=2, progress=False, prompts=MEDR1_EVAL_PROMPTS
    )
    run = {"model": "tiny", "max_new_tokens": 2, "image_size": 384, "prompts": MEDR1_EVAL_PROMPTS}
    engine = CountingEngine(tiny_engine)
    evaluate.evaluate(items, tmp_path / "run", lambda: engine, settings, run)
    asked = {build_prompt(i.record.question, m, MEDR1_EVAL_PROMPTS) for i in items for m in MODES}
    assert set(engine.prompts) == asked
    assert all(" Your task:" not in p for p in engine.prompts)  # not the training templates
    assert json.loads((tmp_path / "run" / "run.json").read_text())["prompts"] == MEDR1_EVAL_PROMPTS
    with pytest.raises(RunMismatch, match="prompts: 'medr1-eval' then, 'training' now"):
        evaluate.evaluate(
            items, tmp_path / "run", CountingEngine, settings, {**run, "prompts": "training"}
        )
    # a folder from before prompt sets were recorded holds training-prompt results
    legacy = {k: v for k, v in run.items() if k != "prompts"}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps(legacy))
    (tmp_path / "old" / RESULTS).write_text("")
    with pytest.raises(RunMismatch, match="'training' then, 'medr1-eval' now"):
        evaluate.evaluate(items, tmp_path / "old", CountingEngine, settings, run)


def test_zero_shot_and_both_official_scorings_end_to_end(answer_a, phantoms, tmp_path, capsys):
    data = split_file(phantoms, "MRI")
    out = tmp_path / "zero-shot"
    argv = ["--model", str(answer_a), "--data", str(data), "--image_root", str(phantoms)]
    argv += ["--out", str(out), "--max_new_tokens", "12", "--quiet", "--prompts", "zero-shot"]
    assert evaluate.main([*argv, "--modes", "thinking"]) == 2
    assert "The zero-shot prompts have no thinking variant" in capsys.readouterr().err
    assert evaluate.main(argv) == 0  # no-thinking only: the zero-shot prompt has no other
    summary = json.loads((out / "summary.json").read_text())
    assert summary["modes"] == [NO_THINKING] and summary["prompts"] == ZERO_SHOT_PROMPTS
    expected = share_of_a(data)  # the policy always writes <answer>A</answer>
    overall = summary["results"][NO_THINKING]["overall"]
    assert 100 * overall["accuracy"] == pytest.approx(expected)
    assert overall["format_kept"] == 0.0  # the zero-shot prompt asked for the letter alone
    assert evaluate.main([*argv, "--official_scoring", "qwen2.5-vl"]) == 0
    qwen25 = json.loads((out / "summary_official_qwen2.5-vl.json").read_text())
    assert qwen25["scoring"] == scores.OFFICIAL_QWEN2_5_VL
    assert 100 * qwen25["results"][NO_THINKING]["overall"]["accuracy"] == pytest.approx(expected)
    assert evaluate.main([*argv, "--official_scoring"]) == 0  # alone: qwen2-vl, as before
    qwen2 = json.loads((out / "summary_official.json").read_text())
    assert qwen2["results"][NO_THINKING]["overall"]["accuracy"] == 0.0  # raw text != letter
    assert "Prompts: zero-shot" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- matrix


def test_matrix_two_checkpoints_by_three_splits(answer_a, tiny_checkpoint, phantoms, tmp_path):
    out = tmp_path / "matrix"
    argv = ["--models", f"always-A={answer_a}", f"random={tiny_checkpoint}", "--data"]
    argv += [f"{m}={split_file(phantoms, m)}" for m in MODALITIES]
    argv += ["--image_root", str(phantoms), "--out", str(out), "--batch_size", "8"]
    argv += ["--max_new_tokens", "8", "--quiet"]
    assert matrix.main(argv) == 0

    for name in ("matrix_thinking", "matrix_no-thinking", "matrix_difference"):
        with open(out / f"{name}.csv", newline="") as handle:
            table = list(csv.reader(handle))
        assert table[0] == [matrix.CORNER, *MODALITIES]
        assert [row[0] for row in table[1:]] == ["always-A", "random"]
        values = [[float(v) for v in row[1:]] for row in table[1:]]
        assert len(values) == 2 and all(len(row) == 3 for row in values)
        if name == "matrix_difference":
            assert values[0] == [0.0, 0.0, 0.0]  # the same answer in both modes
        else:
            assert values[0] == pytest.approx(
                [share_of_a(split_file(phantoms, m)) for m in MODALITIES], abs=0.005
            )
            random_run = read_results(out / "runs" / "random" / RESULTS)
            mode = name.removeprefix("matrix_")
            for column, value in zip(MODALITIES, values[1], strict=True):
                rows = [r for r in random_run if r["file"] == column and r["mode"] == mode]
                assert value == pytest.approx(
                    100 * sum(r["correct"] for r in rows) / len(rows), abs=0.005
                )
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as image:
            image.verify()

    # A second call reuses the runs: no new result lines.
    sizes = {p: p.stat().st_size for p in out.glob("runs/*/" + RESULTS)}
    assert matrix.main(argv) == 0
    assert {p: p.stat().st_size for p in sizes} == sizes


# ----------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("yuxianglai117/Med-R1:VQA_CT", ("yuxianglai117/Med-R1", "VQA_CT")),  # repo:sub-folder
        ("yuxianglai117/Med-R1", ("yuxianglai117/Med-R1", None)),  # whole repo
        ("outputs/run:checkpoint-10", ("outputs/run", "checkpoint-10")),  # local folder:sub
        ("trailing:", ("trailing:", None)),  # nothing after the colon: not a sub-folder
    ],
)
def test_model_spec(spec, expected):
    assert evaluate.split_model(spec) == expected


def test_file_labels_are_short_and_unique():
    files = ["d/modality/test/CT_test.json", "d/other/test/CT_test.json", "d/x/MRI_test.json"]
    assert evaluate.file_labels(files) == {
        files[0]: "modality/test/CT_test.json",
        files[1]: "other/test/CT_test.json",
        files[2]: "MRI_test.json",
    }


def test_bad_input_is_a_message_not_a_crash(tmp_path, capsys):
    assert evaluate.main(["--model", str(tmp_path), "--data", str(tmp_path / "none.json")]) == 2
    assert "No data found" in capsys.readouterr().err
    assert matrix.main(["--models", "a=x", "a=y", "--data", "t=z.json"]) == 2
    assert "given twice" in capsys.readouterr().err


def test_engine_wrapper_is_a_real_engine(tiny_engine):
    """The counting wrapper passes calls through unchanged (the resume test relies on it)."""
    engine = CountingEngine(tiny_engine)
    request = [(Image.new("RGB", (32, 32)), "Q? A)x, B)y", 2)]
    assert list(engine.complete_many(request)) == list(tiny_engine.complete_many(request))
    assert isinstance(engine.engine, PolicyEngine) and engine.prompts == ["Q? A)x, B)y"]
