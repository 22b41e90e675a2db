"""Rows that show one picture share its preparation and its vision encoding, and answer as before.

Run: `.venv/bin/python -m pytest tests/test_shared_pictures.py -q` (a few seconds; the bundled
demo policy, CPU).
"""

from pathlib import Path

import pytest
import torch
from PIL import Image

from medr1_demo.policy.engine import PolicyEngine
from medr1_demo.protocol import MODES, NO_THINKING, THINKING, build_prompt

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Which organ is shown? A)Liver, B)Kidney, C)Spleen"
OPTIONS = ["Liver", "Kidney", "Spleen"]


@pytest.fixture(scope="module")
def engine():
    return PolicyEngine.load(str(ROOT / "assets" / "demo-policy"), device="cpu")


@pytest.fixture(scope="module")
def pictures():
    return [Image.effect_noise((64, 64), 30 + 10 * k).convert("RGB") for k in range(4)]


def test_shared_pictures_give_the_inputs_of_separate_ones(engine, pictures):
    shown = [p for p in pictures for _ in MODES]  # each picture twice, one object
    prompts = [build_prompt(QUESTION, mode) for _ in pictures for mode in MODES]
    shared = engine.model_inputs(shown, prompts)
    separate = engine.model_inputs([p.copy() for p in shown], prompts)  # distinct objects
    assert shared.keys() == separate.keys()
    for key in shared:
        assert torch.equal(shared[key], separate[key]), key


def test_equal_pictures_are_encoded_once_with_the_same_features(engine, pictures):
    visual = engine.model.model.visual
    shown = [p for p in pictures for _ in MODES]
    inputs = engine.model_inputs(
        shown, [build_prompt(QUESTION, m) for _ in pictures for m in MODES]
    )
    encoded = []
    handle = visual.patch_embed.register_forward_hook(lambda m, a, out: encoded.append(len(a[0])))
    try:
        with torch.inference_mode():
            features = visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
            alone = [
                visual(patches, grid_thw=inputs["image_grid_thw"][k : k + 1]).pooler_output
                for k, patches in enumerate(
                    torch.split(inputs["pixel_values"], inputs["image_grid_thw"].prod(-1).tolist())
                )
            ]
    finally:
        handle.remove()
    patches = int(inputs["image_grid_thw"].prod(-1).sum())
    assert encoded[0] == patches // 2  # each of the 4 pictures once, not twice
    assert features.pooler_output.shape[0] == patches // 4  # still one feature per merged patch
    torch.testing.assert_close(features.pooler_output, torch.cat(alone), rtol=1e-5, atol=1e-5)


def test_both_modes_together_answer_as_each_mode_alone(engine, pictures):
    for picture in pictures[:2]:
        together = engine.answer(picture, "Which organ is shown?", OPTIONS, checks=[])
        for mode in (THINKING, NO_THINKING):
            alone = engine.answer(picture.copy(), "Which organ is shown?", OPTIONS, modes=[mode],
                                  checks=[])[mode]  # fmt: skip
            assert together[mode].raw == alone.raw
