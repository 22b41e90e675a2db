"""Tests of continuous batching (`PolicyEngine.complete_many`, `medr1_demo.policy.batching`) on CPU.

Run: `.venv/bin/python -m pytest tests/test_continuous.py -q`

The reference is the engine answering one request at a time (no padding, nothing shared): rows
that leave and join a running batch must come out exactly the same. The bundled demo policy ends
its answers on its own, so its test covers rows finishing at end-of-text; the random tiny policy
never does, so its tests fix each row's length (`exact_length`).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medr1_demo.config import DecodingConfig
from medr1_demo.policy import batching as continuous
from medr1_demo.policy.engine import PolicyEngine
from medr1_demo.protocol import MODES, build_prompt, format_question

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "assets" / "demo-policy"
EXAMPLES = ROOT / "assets" / "examples"
EXACT = DecodingConfig(exact_length=True)


@pytest.fixture
def short_segments(monkeypatch):
    """Segments of 4 tokens, so rows leave, join and get trimmed many times in a short run."""
    monkeypatch.setattr(continuous, "SEGMENT", 4)


def one_at_a_time(engine, requests, settings=None):
    return [
        engine.complete([image], [prompt], max_new_tokens=limit, settings=settings)[0]
        for image, prompt, limit in requests
    ]


def by_index(engine, requests, **kwargs) -> list[tuple[str, int]]:
    """complete_many's answers in request order; each request must be answered exactly once."""
    answers = {}
    for finished in engine.complete_many(requests, **kwargs):
        for index, text, tokens in finished:
            assert index not in answers, f"request {index} answered twice"
            answers[index] = (text, tokens)
    assert sorted(answers) == list(range(len(answers)))
    return [answers[i] for i in range(len(answers))]


def varied_requests(n: int) -> list[tuple[Image.Image, str, int]]:
    """Pictures of different shapes, prompts of different lengths, limits from 1 to 60 tokens."""
    rng = np.random.default_rng(0)
    requests = []
    for i in range(n):
        pixels = rng.integers(0, 255, (60 + 9 * i, 50 + 5 * (i % 4), 3), dtype=np.uint8)
        question = "Which organ is shown" + " here" * (3 * i % 11) + "? A)Liver, B)Kidney"
        requests.append(
            (Image.fromarray(pixels), build_prompt(question, MODES[i % 2]), 1 + 13 * i % 60)
        )
    return requests


def test_demo_policy_answers_the_gallery_as_it_does_one_question_at_a_time(short_segments):
    engine = PolicyEngine.load(str(POLICY), device="cpu")
    cases = json.loads((EXAMPLES / "examples.json").read_text())
    requests = [
        (
            Image.open(EXAMPLES / case["png"]).convert("RGB"),
            build_prompt(format_question(case["question"], case["options"]), mode),
            256,
        )
        for case in cases
        for mode in MODES
    ]
    expected = one_at_a_time(engine, requests)
    assert by_index(engine, requests, batch_size=5) == expected
    lengths = {tokens for _, tokens in expected}
    assert max(lengths) < 256 and len(lengths) > 3  # rows ended on their own, at many lengths


def test_rows_of_any_length_come_out_as_alone(tiny_engine, short_segments):
    requests = varied_requests(14)
    expected = one_at_a_time(tiny_engine, requests, EXACT)
    assert [tokens for _, tokens in expected] == [limit for *_, limit in requests]
    assert by_index(tiny_engine, requests, batch_size=4, settings=EXACT) == expected
    plain = by_index(tiny_engine, requests, batch_size=4, settings=EXACT, continuous_batching=False)
    assert [tokens for _, tokens in plain] == [tokens for _, tokens in expected]


def test_finished_rows_stop_costing(tiny_engine, short_segments):
    """One long row among short ones: plain batches decode every row as long as the longest."""
    requests = [
        (image, prompt, 48 if i == 0 else 4)
        for i, (image, prompt, _) in enumerate(varied_requests(16))
    ]
    rows_decoded = []
    language = tiny_engine.model.model.language_model
    hook = language.register_forward_pre_hook(
        lambda module, args, kwargs: rows_decoded.append(kwargs["inputs_embeds"].shape[0]),
        with_kwargs=True,
    )
    try:
        continuous_answers = by_index(tiny_engine, requests, batch_size=8, settings=EXACT)
        continuous_rows, rows_decoded[:] = sum(rows_decoded), []
        plain_answers = by_index(
            tiny_engine, requests, batch_size=8, settings=EXACT, continuous_batching=False
        )
        plain_rows = sum(rows_decoded)
    finally:
        hook.remove()
    assert [t for _, t in continuous_answers] == [t for _, t in plain_answers]
    assert plain_rows == 8 * 48 + 8 * 4  # the first batch waits for its 48-token row
    assert continuous_rows < 0.5 * plain_rows


def test_requests_are_read_as_slots_free_up(tiny_engine):
    read = []

    def requests():
        for i, request in enumerate(varied_requests(12)):
            read.append(i)
            yield request

    answers = tiny_engine.complete_many(requests(), batch_size=4, settings=EXACT)
    first = next(answers)  # the 1-token row ends at its prefill
    assert len(read) == 4  # one batch read, not all twelve
    rest = [answer for finished in answers for answer in finished]
    assert sorted(i for i, *_ in first + rest) == list(range(12))


def test_bad_batch_size_is_refused(tiny_engine):
    with pytest.raises(ValueError, match="batch_size"):
        next(tiny_engine.complete_many(varied_requests(1), batch_size=0))
