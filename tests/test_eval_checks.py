"""Tests of `python -m trainer eval --checks`: the trust aids over a dataset, per group and mode.

Run: `.venv/bin/python -m pytest tests/test_eval_checks.py -q` (under a minute).

The figures are checked by hand on written result lines, then end to end on real tiny policies:
a programmed policy that always answers A (so it ignores the image and follows the position), and
the bundled demo policy against the same policy made blind (its vision merger's output zeroed).
"""

import csv
import json
from pathlib import Path

import pytest
import torch

from medr1_demo.batch import trust_scores
from medr1_demo.policy.engine import PolicyEngine
from medr1_demo.protocol import MODES, NO_THINKING, THINKING
from trainer.eval import evaluate
from trainer.eval.run_folder import RESULTS, read_results
from trainer.phantoms.synth import write_dataset

ROOT = Path(__file__).resolve().parents[1]


def line(id_, mode, answer, prediction, probability, checks, grey=None, modality="CT"):
    return {
        "id": id_, "file": "f.json", "mode": mode, "answer": answer, "prediction": prediction,
        "correct": prediction == answer, "probability": probability, "checks": checks,
        "controls": {"image": {"letter": grey, "distance": None}}, "modality": modality,
        "question_type": "Lesion Grading",
    }  # fmt: skip


def test_trust_figures_by_hand():
    results = [
        line("1", NO_THINKING, "A", "A", 0.9, {"image": "ignores image", "order": "holds"}, "A"),
        line(
            "2",
            NO_THINKING,
            "A",
            "B",
            0.6,
            {"image": "uses image", "order": "follows position"},
            "A",
        ),  # fmt: skip
        line(
            "3",
            NO_THINKING,
            "B",
            "B",
            0.95,
            {"image": "uses image", "order": "changes"},
            "B",
            modality="MRI",
        ),  # fmt: skip
        line("4", NO_THINKING, "C", None, None, {"image": "unknown", "order": "unknown"}, "C"),
        line("1", THINKING, "A", "A", 0.5, {"rationale": "consistent"}),
        line("2", THINKING, "A", "B", 0.5, {"rationale": "contradicts"}),
        line("3", THINKING, "B", "B", 0.5, {"rationale": "no conclusion"}),
    ]
    report = trust_scores.summarise(results, MODES)
    plain = report["results"][NO_THINKING]["overall"]
    assert plain["n_image"] == 3  # the fourth has no valid answer to compare
    assert plain["image_unchanged"] == pytest.approx(2 / 3)  # 1 and 3 keep their letter
    assert plain["image_flagged"] == pytest.approx(1 / 3)
    assert (plain["n_order"], plain["order_holds"]) == (3, pytest.approx(1 / 3))
    assert plain["follows_position"] == pytest.approx(1 / 3)
    assert plain["p_right"] == pytest.approx(0.925) and plain["p_wrong"] == pytest.approx(0.6)
    # bins: 0.6 (wrong) -> |0 - 0.6| x 1/3; 0.9 and 0.95 (right) -> |1 - 0.925| x 2/3
    assert plain["ece"] == pytest.approx(0.6 / 3 + 0.075 * 2 / 3)
    assert report["results"][NO_THINKING]["modality"]["MRI"]["image_unchanged"] == 1.0
    thinking = report["results"][THINKING]["overall"]
    assert thinking["rationale_agrees"] == 0.5 and thinking["no_conclusion"] == pytest.approx(1 / 3)
    assert thinking["ece"] == pytest.approx(abs(2 / 3 - 0.5))  # one bin: 2 of 3 right at 0.5
    bins = report["results"][THINKING]["reliability"]
    assert [b["n"] for b in bins] == [0] * 5 + [3] + [0] * 4


def test_calibration_error_is_zero_only_when_probabilities_match_accuracy():
    calibrated = [(0.25, True)] + [(0.25, False)] * 3 + [(0.75, True)] * 3 + [(0.75, False)]
    assert trust_scores.expected_calibration_error(calibrated) == pytest.approx(0.0)
    overconfident = [(1.0, True), (1.0, False)]
    assert trust_scores.expected_calibration_error(overconfident) == pytest.approx(0.5)
    assert trust_scores.expected_calibration_error([]) is None


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    write_dataset(root, 48, seed=5, test_fraction=0.5, image_size=64, dicom=False, progress=False)
    return root


def test_eval_checks_of_an_always_a_policy(answer_a, phantoms, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--model", str(answer_a), "--data", str(phantoms / "test.json"), "--out", str(out),
            "--batch_size", "16", "--max_new_tokens", "12", "--quiet", "--checks"]  # fmt: skip
    assert evaluate.main(argv) == 0
    printed = capsys.readouterr().out
    assert "same answer without the image" in printed and "expected calibration error" in printed

    report = json.loads((out / "checks.json").read_text())
    items = len(json.loads((phantoms / "test.json").read_text()))
    for mode in MODES:
        overall = report["results"][mode]["overall"]
        assert overall["answers"] == overall["n_image"] == overall["n_order"] == items
        assert overall["image_unchanged"] == 1.0 and overall["image_flagged"] == 1.0
        assert overall["follows_position"] == 1.0  # it writes A wherever the options are
        assert overall["p_right"] > 0.9 and overall["p_wrong"] > 0.9  # sure, right or wrong
        assert overall["n_rationale"] == 0  # it writes no rationale
    with open(out / "checks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["grouping"] for r in rows} == {"overall", "file", "modality", "question_type"}
    for mode in MODES:
        assert (out / f"reliability-{mode}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "reliability.csv", newline="") as handle:
        assert sum(int(r["n"]) for r in csv.DictReader(handle)) == 2 * items

    # A rerun loads nothing and reports the same; a plain run in the same folder is refused.
    results = read_results(out / RESULTS)
    assert evaluate.main(argv) == 0
    assert len(read_results(out / RESULTS)) == len(results)
    assert json.loads((out / "checks.json").read_text()) == report
    capsys.readouterr()
    assert evaluate.main(argv[:-1]) == 2
    assert "checks" in capsys.readouterr().err
    assert evaluate.main([*argv, "--plain_batches"]) == 2  # checks need the shared batch
    assert "--plain_batches" in capsys.readouterr().err


def blind(engine: PolicyEngine) -> PolicyEngine:
    with torch.no_grad():  # what the vision tower hands the language model is now always zero
        engine.model.model.visual.merger.mlp[2].weight.zero_()
        engine.model.model.visual.merger.mlp[2].bias.zero_()
    return engine


def test_eval_checks_tell_a_blind_policy_from_one_that_looks(phantoms, tmp_path):
    items, problems = evaluate.collect_items([str(phantoms / "test.json")])
    assert not problems
    settings = evaluate.Settings(batch_size=32, max_new_tokens=32, progress=False)
    checks = [f"{NO_THINKING}:image"]
    rates = {}
    for name in ("demo", "blind"):
        engine = PolicyEngine.load(str(ROOT / "assets" / "demo-policy"), device="cpu")
        engine = blind(engine) if name == "blind" else engine
        results, _ = evaluate.evaluate(items, tmp_path / name, lambda e=engine: e, settings,
                                       {"model": name}, checks=checks)  # fmt: skip
        report = trust_scores.summarise(results, MODES)
        rates[name] = report["results"][NO_THINKING]["overall"]
        assert report["results"][THINKING]["overall"]["n_image"] == 0  # not asked there
    assert rates["blind"]["image_unchanged"] >= 0.95
    assert rates["demo"]["image_unchanged"] <= 0.6
