"""Trust aids on real tiny policies: option probabilities, the image and order controls, rationales.

Run: `.venv/bin/python -m pytest tests/test_trust.py -q` (about a minute: one policy is trained).

Policies: the bundled demo policy; the same policy made blind (its vision merger's output zeroed,
so image tokens carry nothing); and the demo policy fine-tuned for 20 SFT steps on phantoms whose
answer is always A.
"""

import json
import math
from pathlib import Path

import pytest
import torch

from medr1_demo.config import DecodingConfig
from medr1_demo.policy import trust
from medr1_demo.policy.engine import PolicyEngine
from medr1_demo.protocol import LETTERS, NO_THINKING, THINKING, Question, rationale_conclusion

ROOT = Path(__file__).resolve().parents[1]
BOTH_CONTROLS = {THINKING: trust.CONTROLS, NO_THINKING: trust.CONTROLS}


def verdicts(engine, gallery, mode, check, **kwargs):
    found = []
    for image, question, options, _ in gallery:
        answer = engine.answer(image, question, options, modes=[mode], **kwargs)[mode]
        found.append(answer.checks[check].verdict)
    return found


@pytest.fixture(scope="module")
def blind_engine():
    engine = PolicyEngine.load(str(ROOT / "assets" / "demo-policy"), device="cpu")
    with torch.no_grad():  # what the vision tower hands the language model is now always zero
        engine.model.model.visual.merger.mlp[2].weight.zero_()
        engine.model.model.visual.merger.mlp[2].bias.zero_()
    return engine


@pytest.fixture(scope="module")
def always_a_engine(tmp_path_factory):
    from medr1_demo.protocol import make_solution
    from trainer.phantoms.synth import write_dataset
    from trainer.train import sft

    out = tmp_path_factory.mktemp("always-a")
    write_dataset(out / "data", 64, seed=1, image_size=112, dicom=False, progress=False)
    records = json.loads((out / "data" / "train.json").read_text(encoding="utf-8"))
    for record in records:
        record["solution"] = make_solution("A")
    (out / "data" / "a.json").write_text(json.dumps(records), encoding="utf-8")
    argv = ["--config", str(ROOT / "configs/tiny/sft.yaml"), "--model_name_or_path",
            str(ROOT / "assets/demo-policy"), "--data_files", str(out / "data" / "a.json"),
            "--mode", NO_THINKING, "--image_size", "112", "--max_steps", "20",
            "--learning_rate", "1e-3", "--per_device_train_batch_size", "8",
            "--output_dir", str(out / "sft"), "--save_strategy", "no", "--plots", "false"]  # fmt: skip
    assert sft.main(argv) == 0
    return PolicyEngine.load(str(out / "sft"), device="cpu")


# --------------------------------------------------------------------------- probabilities


def test_probabilities_sum_to_one_and_greedy_answers_are_the_argmax(demo_engine, gallery):
    for image, question, options, _ in gallery:
        answers = demo_engine.answer(image, question, options)
        for mode, answer in answers.items():
            probs = answer.probabilities
            assert probs is not None and answer.probability_note is None, (mode, answer.raw)
            assert set(probs) == set(LETTERS[: len(options)])
            assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-3)
            assert 0 < answer.letter_mass <= 1
            if mode == NO_THINKING:  # greedy: the letter written is the most probable one
                assert answer.letter == max(probs, key=probs.get)


def test_no_answer_tag_means_no_probabilities_and_a_reason(tiny_engine):
    from PIL import Image

    # The untrained tiny policy rambles; cut at 3 tokens it writes no <answer> tag.
    settings = DecodingConfig(max_new_tokens_thinking=3, max_new_tokens_no_thinking=3)
    answers = tiny_engine.answer(Image.new("RGB", (64, 64)), "Which?", ["CT", "MRI"],
                                 settings=settings)  # fmt: skip
    for answer in answers.values():
        assert "<answer>" not in answer.raw
        assert answer.probabilities is None and "no <answer> tag" in answer.probability_note


# --------------------------------------------------------------------------------- controls


def test_a_blind_policy_is_flagged_as_not_using_the_image(blind_engine, gallery):
    found = verdicts(blind_engine, gallery, NO_THINKING, trust.IMAGE)
    assert found.count("ignores image") >= 0.95 * len(found), found


def test_the_demo_policy_is_rarely_flagged(demo_engine, gallery):
    # The bundled policy: 3 of the 16 flagged, with OMP_NUM_THREADS=1 and 2 alike; the nearest
    # case on the other side keeps its letter at distance 0.15 (threshold 0.1).
    found = verdicts(demo_engine, gallery, NO_THINKING, trust.IMAGE)
    assert found.count("ignores image") <= 0.2 * len(found), found


def test_an_always_a_policy_follows_the_position(always_a_engine, gallery):
    found = verdicts(always_a_engine, gallery, NO_THINKING, trust.ORDER)
    assert found.count("follows position") == len(found), found


def test_rotation_is_a_derangement_mapped_back():
    question = Question.ask("Which?", ["CT", "MRI", "X-Ray"])
    moved, back = trust.rotated(question)
    assert moved.options == ("MRI", "X-Ray", "CT")
    for letter, original in back.items():  # every option moved, and maps back to itself
        assert letter != original
        assert moved.options[LETTERS.index(letter)] == question.options[LETTERS.index(original)]


@pytest.mark.parametrize(
    "letter, moved_letter, verdict",
    [
        ("A", "C", "holds"),  # CT moved to C and was chosen again
        ("A", "A", "follows position"),  # A again, which is now MRI
        ("A", "B", "changes"),  # X-Ray: neither the text nor the place
        (None, "A", "unknown"),  # no valid first answer: nothing to compare
    ],
)
def test_order_verdicts(letter, moved_letter, verdict):
    _, back = trust.rotated(Question.ask("Which?", ["CT", "MRI", "X-Ray"]))
    check = trust.order_check(letter, moved_letter, back, None, ("CT", "MRI", "X-Ray"))
    assert check.verdict == verdict and check.sentence


def test_image_verdict_needs_the_same_answer_and_a_small_distance():
    options = ("CT", "MRI")
    near, far = {"A": 0.9, "B": 0.1}, {"A": 0.6, "B": 0.4}
    assert trust.image_check("A", near, "A", near, options).verdict == "ignores image"
    assert trust.image_check("A", near, "A", far, options).verdict == "uses image"
    changed = trust.image_check("A", near, "B", {"A": 0.4, "B": 0.6}, options)
    assert changed.verdict == "uses image" and "B) MRI" in changed.sentence


# ------------------------------------------------------------------------------- rationales


@pytest.mark.parametrize(
    "rationale, expected",
    [
        ("A fan-shaped field of grainy speckle on black: ultrasound.", 2),  # phantom style
        ("Bright bone ring: CT. A round lesion brighter than the liver: a liver mass.", 1),
        ("It looks like a nodule. So the answer is C).", 2),  # a letter reference
        ("Yellow drusen on the macula: macular degeneration.", 2),  # part of one option
        ("Nothing decisive here.", None),  # names no option
    ],
)
def test_rationale_conclusions(rationale, expected):
    options = ["CT", "Liver mass", "Ultrasound"]
    if "macul" in rationale:
        options = ["No abnormality", "Diabetic retinopathy", "Age-related macular degeneration"]
    if "nodule" in rationale:
        options = ["Lung", "Cyst", "Lung nodule"]
    assert rationale_conclusion(rationale, options) == expected


def test_contradicting_rationales_are_flagged_and_consistent_ones_not(demo_engine, gallery):
    options = ("CT", "MRI", "Ultrasound", "X-Ray")
    said = trust.rationale_check("Grainy speckle on black: ultrasound.", "D", options)
    assert said.verdict == "contradicts"
    assert said.sentence == "The reasoning points to C) Ultrasound; the answer is D) X-Ray."
    assert (
        trust.rationale_check("Grainy speckle: ultrasound.", "C", options).verdict == "consistent"
    )
    # The demo policy itself: at least one gallery rationale concludes with another option
    # (X-ray laterality), and most agree with their answers.
    found = verdicts(demo_engine, gallery, THINKING, "rationale")
    assert "contradicts" in found and found.count("consistent") >= len(found) // 2, found


# ------------------------------------------------------------------------------- robustness


def test_a_control_that_breaks_never_costs_the_answers(tiny_engine, monkeypatch):
    from PIL import Image

    demo_engine = tiny_engine  # it records no training size: pictures reach its processor as is
    image, question, options = Image.new("RGB", (64, 64), (80, 80, 80)), "Which?", ["CT", "MRI"]
    expected = demo_engine.answer(image, question, options, checks={})
    # A 400 x 1 control picture cannot be prepared (Qwen2-VL refuses aspect ratios over 200):
    # the batch holding it fails, and the answers are asked again without the controls.
    monkeypatch.setattr(trust, "grey_image", lambda picture: Image.new("RGB", (400, 1)))
    answers = demo_engine.answer(image, question, options)
    for mode in answers:
        assert answers[mode].raw == expected[mode].raw
    # Only no-thinking asks controls by default: its card says they failed, thinking is as usual.
    assert answers[NO_THINKING].checks["controls"].verdict == "failed"
    assert "controls" not in answers[THINKING].checks
    monkeypatch.undo()
    monkeypatch.setattr(trust, "order_check", lambda *a: 1 / 0)  # a check's own code fails
    answers = demo_engine.answer(image, question, options)
    assert answers[NO_THINKING].checks[trust.ORDER].verdict == "failed"
    assert answers[NO_THINKING].checks[trust.IMAGE].verdict != "failed"


def test_unknown_checks_are_refused_plainly(demo_engine, gallery):
    image, question, options, _ = gallery[0]
    with pytest.raises(ValueError, match="Unknown check 'no-thinking:colour'"):
        demo_engine.answer(image, question, options, checks=["no-thinking:colour"])


def test_thinking_controls_are_asked_when_chosen(demo_engine, gallery):
    image, question, options, _ = gallery[4]
    answers = demo_engine.answer(image, question, options, checks=BOTH_CONTROLS)
    for mode in answers:
        assert set(trust.CONTROLS) <= set(answers[mode].checks)


# ------------------------------------------------------------------------------------- API


def test_the_api_returns_what_the_engine_computed(demo_engine, tmp_path):
    from medr1_demo.web.handlers import Backend, Handlers

    folder = ROOT / "assets" / "examples"
    case = json.loads((folder / "examples.json").read_text(encoding="utf-8"))[0]
    handlers = Handlers(Backend(demo_engine.info, demo_engine.answer, demo_engine.stream))
    result = handlers.answer_api(str(folder / case["file"]), case["question"], case["options"])
    from medr1_demo.scan.reader import load_scan

    image = load_scan(folder / case["file"]).image
    expected = demo_engine.answer(image, case["question"], case["options"])
    for mode, answer in expected.items():
        sent = result["answers"][mode]
        assert sent["probabilities"] == answer.probabilities
        assert set(sent["checks"]) == set(answer.checks)
        for name, check in answer.checks.items():
            assert sent["checks"][name]["verdict"] == check.verdict
            assert sent["checks"][name]["sentence"] == check.sentence
    bad = handlers.answer_api(str(folder / case["file"]), "Which?", ["CT", "MRI"], checks=["x"])
    assert not bad["ok"] and "Unknown check" in bad["error"]
    bad = handlers.answer_api(str(folder / case["file"]), "Which?", ["CT", "MRI"], checks="image")
    assert not bad["ok"] and "list" in bad["error"]
    none = handlers.answer_api(str(folder / case["file"]), "Which?", ["CT", "MRI"], checks=[])
    assert none["ok"] and none["answers"]["no-thinking"]["checks"] == {}
