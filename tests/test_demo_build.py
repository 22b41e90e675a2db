"""`python -m trainer demo` end to end at toy size, and the bundled demo policy it made.

    .venv/bin/python -m pytest tests/test_demo_build.py -q

The toy build runs every stage of the real one (phantoms, base, SFT, evaluation, GRPO,
evaluation, the served folder) with the real recipes and a few steps each; its targets are set
out of reach, so it must refuse to replace the output folder unless forced. The bundled policy in
`assets/demo-policy/` is then checked against what the issue asks of it: size on disk, the
figures in its metadata, and answers to the app's example gallery through the app's engine.
"""

import json
from pathlib import Path

import yaml

from medr1_demo import protocol
from trainer.experiments import demo_policy as demo

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "assets" / "demo-policy"
EXAMPLES = ROOT / "assets" / "examples"


def toy_recipe(folder: Path) -> Path:
    """The real pipeline recipe at toy size, its targets out of reach."""
    recipe = yaml.safe_load((ROOT / demo.DEFAULT_RECIPE).read_text())
    recipe["synth"] = {"n": 48, "seed": 1, "image_size": 56, "test_fraction": 0.25}
    recipe["image_size"] = 56
    recipe["base"] = {"text_hidden": 32, "text_layers": 1, "vision_embed": 32, "vocab_size": 512}
    recipe["sft"] = str(ROOT / recipe["sft"])
    recipe["grpo"] = str(ROOT / recipe["grpo"])
    recipe["eval"] = {"batch_size": 16, "max_new_tokens": 24}
    recipe["targets"] = {"accuracy": 0.99, "format_kept": 0.99, "rationale": 0.99}
    path = folder / "toy.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_toy_build_runs_every_stage_and_guards_the_output(tmp_path, capsys):
    out = tmp_path / "policy"
    out.mkdir()
    (out / "keep.txt").write_text("the earlier policy")
    argv = ["--recipe", str(toy_recipe(tmp_path)), "--work", str(tmp_path / "work")]
    argv += ["--out", str(out), "--sft_out", str(tmp_path / "policy-sft")]
    argv += ["--grpo_out", str(tmp_path / "policy-grpo")]
    argv += ["--sft_flags", "--max_steps 4 --per_device_train_batch_size 4"]
    argv += ["--grpo_flags", "--max_steps 2 --per_device_train_batch_size 8"]

    assert demo.main(argv) == 1
    err = capsys.readouterr().err
    assert "missed:" in err and "thinking accuracy" in err
    assert (out / "keep.txt").exists()  # a policy that misses its targets replaces nothing

    assert demo.main([*argv, "--force"]) == 1
    assert not (out / "keep.txt").exists()
    names = {p.name for p in out.iterdir()}
    assert set(demo.SERVED_FILES) | {"medr1_policy.json"} == names
    metadata = json.loads((out / "medr1_policy.json").read_text())
    # Served: a GRPO checkpoint only if it beat the warm start on the validation split.
    served = metadata["served"]
    sft_served = f"{demo.DESCRIPTION} ({demo.SFT_SERVED})"  # the model panel says which is served
    assert metadata["description"] == (sft_served if served["run"] == "sft" else demo.DESCRIPTION)
    assert metadata["mode"] == "both" and served["why"]
    assert metadata["method"] == ("sft" if served["run"] == "sft" else "sft+grpo")
    assert set(served["validation"]) >= {"sft", "grpo/grpo"}  # the warm start and the final
    assert metadata["data"]["train_records"] + metadata["data"]["test_records"] == 48
    assert 0 < metadata["data"]["validation_records"] < metadata["data"]["train_records"]
    # The other stage is written beside the served one, so the page can compare the two.
    assert (tmp_path / "policy-sft").exists() == (served["run"] != "sft")
    assert (tmp_path / "policy-grpo").exists() == (served["run"] == "sft")
    if served["run"] == "sft":
        after = json.loads((tmp_path / "policy-grpo" / "medr1_policy.json").read_text())
        assert (after["method"], after["description"]) == ("sft+grpo", demo.GRPO_DESCRIPTION)
        assert after["metrics"]["test"] == metadata["metrics"]["test_after_grpo"]
    for stage in ("test", "test_after_sft", "test_after_grpo"):
        for mode in protocol.MODES:
            assert metadata["metrics"][stage][mode]["items"] == metadata["data"]["test_records"]
    assert metadata["metrics"]["targets_missed"]

    from medr1_demo.policy.engine import PolicyEngine

    engine = PolicyEngine.load(str(out), device="cpu")
    assert engine.info.description == metadata["description"] and engine.info.trained_mode == "both"


def test_a_broken_recipe_is_a_plain_error(tmp_path, capsys):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("synth: {n: 10}\n")
    assert demo.main(["--recipe", str(recipe), "--work", str(tmp_path / "w")]) == 2
    assert "lacks: image_size, base, sft, grpo, eval, targets" in capsys.readouterr().err


# ------------------------------------------------------------------------- the bundled policy


def test_bundled_policy_is_small_and_met_its_targets():
    size = sum(p.stat().st_size for p in POLICY.iterdir())
    assert size <= 20e6, f"{size / 1e6:.1f} MB"
    metadata = json.loads((POLICY / "medr1_policy.json").read_text())
    assert metadata["description"].startswith("demo policy trained on synthetic phantoms")
    if metadata["method"] == "sft":  # GRPO did not help this build, and the panel says so
        assert "its GRPO stage did not improve it" in metadata["description"]
    test = metadata["metrics"]["test"]
    for mode in protocol.MODES:
        assert test[mode]["items"] >= 500
        assert test[mode]["accuracy"] >= 0.85, (mode, test[mode]["accuracy"])
        assert test[mode]["format_kept"] >= 0.98
    assert test[protocol.THINKING]["rationale"] >= 0.98
    assert not metadata["metrics"]["targets_missed"]


def test_bundled_policy_answers_the_gallery_in_both_modes():
    from medr1_demo.policy.engine import PolicyEngine
    from medr1_demo.scan.reader import load_scan

    engine = PolicyEngine.load(str(POLICY), device="cpu")
    cases = json.loads((EXAMPLES / "examples.json").read_text())
    correct = {mode: 0 for mode in protocol.MODES}
    for case in cases:
        image = load_scan(EXAMPLES / case["file"]).image
        answers = engine.answer(image, case["question"], case["options"])
        for mode, answer in answers.items():
            assert answer.format_ok, (case["file"], mode, answer.raw)
            correct[mode] += answer.letter == case["answer"]
        assert answers[protocol.THINKING].rationale
    # 16 phantom cases the policy never trained on; at 85% accuracy, 11 or more is near certain.
    assert all(n >= 0.65 * len(cases) for n in correct.values()), correct
