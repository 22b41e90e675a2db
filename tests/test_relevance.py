"""Relevance maps (`medr1_demo.policy.relevance`): where a mode's answer came from in the picture.

A tiny Qwen2-VL (the real model class) is trained here, about 15 s for each of two seeds, to say if a
bright disc lies in the picture's upper-left quadrant, with random shades everywhere else: its
answer depends on that quadrant only, so a map of a "yes" must put most relevance there.
"""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from medr1_demo.policy import relevance
from medr1_demo.policy.engine import PolicyEngine
from medr1_demo.policy.tiny import build_tiny_checkpoint
from medr1_demo.protocol import MODES, NO_THINKING, THINKING, Question, build_prompt

SIDE = 112  # 8 x 8 patches of 14 pixels, 4 x 4 merged tokens: a quadrant is 2 x 2 of them
QUESTION = Question.ask("Is there a bright disc in the upper left?", ["yes", "no"])


def picture(rng, disc: bool) -> Image.Image:
    """Random grey shades per patch; with `disc`, a bright disc somewhere in the upper left."""
    shades = rng.integers(0, 128, (8, 8, 1)).repeat(14, 0).repeat(14, 1).repeat(3, 2)
    pixels = shades.astype(np.uint8)
    if disc:
        cy, cx = rng.integers(16, 40, 2)
        yy, xx = np.mgrid[:SIDE, :SIDE]
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < 14**2] = 250
    return Image.fromarray(pixels)


STEPS = 200


@pytest.fixture(scope="module", params=[0, 1], ids=["seed0", "seed1"])
def quadrant_engine(request, tmp_path_factory):
    """A tiny policy trained to answer A (yes) exactly when the upper-left quadrant holds a disc
    (two training seeds: the outcome must not hang on one)."""
    seed = request.param
    folder = build_tiny_checkpoint(tmp_path_factory.mktemp("quadrant") / "policy", seed=seed)
    engine = PolicyEngine.load(str(folder), device="cpu", image_size=SIDE)
    tokenizer = engine.processor.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    completions = {
        disc: tokenizer.encode(f"<answer>{x}</answer>", add_special_tokens=False) + [end]
        for disc, x in ((True, "A"), (False, "B"))
    }
    assert len(completions[True]) == len(completions[False])
    pairs = zip(completions[True], completions[False], strict=True)
    letter_at = next(i for i, (a, b) in enumerate(pairs) if a != b)  # e.g. ">A" vs ">B"
    prompt = build_prompt(QUESTION.formatted, NO_THINKING)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = engine.model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(STEPS):
        discs = rng.random(8) < 0.5
        inputs = engine.model_inputs([picture(rng, d) for d in discs], [prompt] * 8)
        tail = torch.tensor([completions[bool(d)] for d in discs])
        batch = dict(inputs)
        batch["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
        for key in ("attention_mask", "mm_token_type_ids"):
            if key in inputs:
                filler = (
                    torch.ones_like(tail) if key == "attention_mask" else torch.zeros_like(tail)
                )
                batch[key] = torch.cat([inputs[key], filler], dim=1)
        logits = model(**batch).logits[:, -tail.shape[1] - 1 : -1]  # each predicts the next
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tail, reduction="none")
        loss = losses.mean() + losses[:, letter_at].mean()  # the format, and above all the letter
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    return engine


def test_map_of_a_quadrant_policy_lies_in_that_quadrant(quadrant_engine):
    rng = np.random.default_rng(1)
    prompt = build_prompt(QUESTION.formatted, NO_THINKING)
    shares = []
    for _ in range(4):
        scan = picture(rng, disc=True)
        answers = quadrant_engine.answer(scan, QUESTION, modes=[NO_THINKING], checks=[])
        assert answers[NO_THINKING].letter == "A"  # it learned the task
        found = relevance.relevance_map(quadrant_engine, scan, prompt, "<answer>A</answer>", 2)
        assert found.problem is None and found.letter == "A"
        grid = np.array(found.grid)
        assert grid.shape == (4, 4) and abs(grid.sum() - 1) < 1e-3
        shares.append(grid[:2, :2].sum())  # the upper-left quadrant: a quarter of the picture
        assert found.peak[0] < 2 and found.peak[1] < 2
    assert min(shares) > 0.5, shares  # chance is 0.25


def test_engine_adds_maps_after_the_answers_and_only_when_asked(quadrant_engine):
    scan = picture(np.random.default_rng(2), disc=True)
    plain = quadrant_engine.answer(scan, QUESTION, checks=[])
    assert all(a.relevance is None for a in plain.values())  # off by default
    updates = list(quadrant_engine.stream(scan, QUESTION, checks=[], maps=True))
    answers, mapped = updates[-2], updates[-1]
    assert all(a.relevance is None and a.done for a in answers.values())  # answers come first
    for mode in MODES:
        assert dataclasses.replace(mapped[mode], relevance=None) == answers[mode]
        shown = mapped[mode].relevance
        if answers[mode].letter:
            assert shown.grid is not None and shown.letter == answers[mode].letter
        else:
            assert shown.grid is None and "no answer letter" in shown.problem


def test_a_failing_map_keeps_the_answers(quadrant_engine, monkeypatch):
    scan = picture(np.random.default_rng(3), disc=True)
    before = quadrant_engine.answer(scan, QUESTION, checks=[])

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(relevance, "visual_relevance", broken)
    after = quadrant_engine.answer(scan, QUESTION, checks=[], maps=True)
    for mode in MODES:
        same = dataclasses.replace(after[mode], relevance=None, seconds=before[mode].seconds)
        assert same == before[mode]  # the same answer, timing aside
        if before[mode].letter:
            assert after[mode].relevance.grid is None
            assert after[mode].relevance.problem == relevance.FAILED


def test_thinking_maps_read_the_letter_after_the_rationale(quadrant_engine):
    scan = picture(np.random.default_rng(4), disc=True)
    prompt = build_prompt(QUESTION.formatted, THINKING)
    completion = "<think>A bright disc lies upper left.</think>\n<answer>A</answer>"
    found = relevance.relevance_map(quadrant_engine, scan, prompt, completion, 2)
    assert found.letter == "A" and np.array(found.grid).shape == (4, 4)
    missing = relevance.relevance_map(quadrant_engine, scan, prompt, "<think>unsure</think>", 2)
    assert missing.grid is None and "no <answer> tag" in missing.problem


def test_pixel_level_maps_also_sum_to_one(quadrant_engine):
    scan = picture(np.random.default_rng(5), disc=True)
    prompt = build_prompt(QUESTION.formatted, NO_THINKING)
    found = relevance.relevance_map(
        quadrant_engine, scan, prompt, "<answer>A</answer>", 2, level="pixels"
    )
    grid = np.array(found.grid)
    assert abs(grid.sum() - 1) < 1e-3
    assert grid[:2, :2].sum() > 0.5  # the quadrant holds most of it here too
