"""The shared scheduler: many requests in one running batch, each as if it ran alone.

Run: `.venv/bin/python -m pytest tests/test_scheduler.py -q`. Real policies (the bundled demo
policy, whose answers end at their own lengths, and the tiny one), real threads.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from medr1_demo.config import DecodingConfig
from medr1_demo.policy.generation import GenerationError, Row
from medr1_demo.policy.scheduler import BUSY, Busy, Scheduler
from medr1_demo.protocol import build_prompt, format_question

SETTINGS = DecodingConfig(max_new_tokens_thinking=96, max_new_tokens_no_thinking=16)


def timeless(answers):
    """An answer without its timings, to compare runs."""
    return {
        m: (a.raw, a.letter, a.tokens, a.probabilities, {k: c.verdict for k, c in a.checks.items()})
        for m, a in answers.items()
    }


@pytest.fixture
def scheduled(demo_engine):
    scheduler = Scheduler(demo_engine, SETTINGS, max_rows=12, segment=4).start()
    demo_engine.use_scheduler(scheduler)
    yield demo_engine, scheduler
    demo_engine.use_scheduler(None)
    scheduler.stop()


def test_concurrent_requests_get_what_they_would_get_alone(demo_engine, gallery, scheduled):
    engine, scheduler = scheduled
    engine.use_scheduler(None)
    alone = [timeless(engine.answer(i, q, o, settings=SETTINGS)) for i, q, o, _ in gallery]
    engine.use_scheduler(scheduler)
    with ThreadPoolExecutor(8) as pool:  # 16 requests of 4 rows through a 12-row batch
        shared = list(
            pool.map(lambda c: timeless(engine.answer(*c[:3], settings=SETTINGS)), gallery)
        )
    assert shared == alone


def test_each_request_streams_its_own_rows(gallery, scheduled):
    engine, _ = scheduled
    image, question, options, _ = gallery[0]
    with ThreadPoolExecutor(2) as pool:
        other = pool.submit(lambda: engine.answer(*gallery[1][:3], settings=SETTINGS))
        partials = list(engine.stream(image, question, options, settings=SETTINGS))
        other.result()
    thinking = [p["thinking"].raw for p in partials[:-1]]
    assert len(partials) > 3 and thinking == sorted(thinking, key=len)  # the text only grows
    assert all(p["thinking"].raw.startswith(t) for p in partials[-1:] for t in thinking)
    assert all(a.done for a in partials[-1].values())


def test_a_request_that_cannot_be_prepared_fails_alone(tiny_engine):
    # The tiny policy records no training size, so its processor sees pictures as they come,
    # and Qwen2-VL refuses aspect ratios over 200.
    scheduler = Scheduler(tiny_engine, SETTINGS, max_rows=12, segment=4).start()
    tiny_engine.use_scheduler(scheduler)
    good_image = Image.new("RGB", (64, 64), (90, 90, 90))
    try:
        expected = None
        with ThreadPoolExecutor(3) as pool:
            good = [pool.submit(tiny_engine.answer, good_image, "Which?", ["CT", "MRI"],
                                settings=SETTINGS) for _ in range(2)]  # fmt: skip
            with pytest.raises(GenerationError, match="could not be prepared"):
                tiny_engine.answer(Image.new("RGB", (400, 1)), "Which?", ["CT", "MRI"],
                                   settings=SETTINGS)  # fmt: skip
            results = [timeless(f.result()) for f in good]
        tiny_engine.use_scheduler(None)
        expected = timeless(
            tiny_engine.answer(good_image, "Which?", ["CT", "MRI"], settings=SETTINGS)
        )
        assert results == [expected, expected]
    finally:
        tiny_engine.use_scheduler(None)
        scheduler.stop()


def test_a_request_whose_generation_raises_fails_alone(demo_engine, gallery):
    """A fault injected into the shared batch whenever one request's rows are in it."""
    poisoned = {0}  # the first ticket this scheduler numbers: the one submitted first below

    class Faulty(Scheduler):
        def _advance(self, batch):
            if poisoned & {key for key, _ in batch.ids}:
                raise RuntimeError("injected fault")
            super()._advance(batch)

    expected = timeless(demo_engine.answer(*gallery[2][:3], settings=SETTINGS))
    scheduler = Faulty(demo_engine, SETTINGS, max_rows=12, segment=4).start()
    try:
        rows = [Row(gallery[3][0], build_prompt(format_question(*gallery[3][1:3]), "thinking"), 96)]
        bad = scheduler.submit(rows)
        assert bad.key in poisoned
        demo_engine.use_scheduler(scheduler)
        with ThreadPoolExecutor(1) as pool:
            good = pool.submit(demo_engine.answer, *gallery[2][:3], settings=SETTINGS)
            with pytest.raises(GenerationError, match="injected fault"):
                list(bad)
            assert timeless(good.result()) == expected
    finally:
        demo_engine.use_scheduler(None)
        scheduler.stop()


def test_a_client_that_leaves_mid_stream_cancels_its_rows(gallery, scheduled):
    engine, scheduler = scheduled
    image, question, options, _ = gallery[0]
    stream = engine.stream(image, question, options, settings=SETTINGS)
    next(stream)
    stream.close()  # the client went away after the first tokens
    deadline = time.time() + 10
    while scheduler._running and time.time() < deadline:  # its rows leave at the next segment
        time.sleep(0.05)
    assert not scheduler._running
    assert engine.answer(image, question, options, settings=SETTINGS)["thinking"].done


def test_a_full_queue_is_refused_with_a_sentence(demo_engine, gallery):
    scheduler = Scheduler(demo_engine, SETTINGS, queue_size=2)  # not started: nothing leaves
    image, question, options, _ = gallery[0]
    row = Row(image, build_prompt(format_question(question, options), "no-thinking"), 8)
    scheduler.submit([row])
    scheduler.submit([row])
    with pytest.raises(Busy) as refused:
        scheduler.submit([row])
    assert str(refused.value) == BUSY and "try again" in BUSY


def test_stopping_ends_the_loop_and_answers_the_waiting(demo_engine, gallery):
    scheduler = Scheduler(demo_engine, SETTINGS)
    image, question, options, _ = gallery[0]
    waiting = scheduler.submit([Row(image, build_prompt(format_question(question, options),
                                                        "no-thinking"), 8)])  # fmt: skip
    scheduler.start()
    scheduler.stop()
    assert not scheduler.running and not scheduler._thread.is_alive()
    try:  # it either finished before the stop or was told the server is shutting down
        assert list(waiting)[-1].done
    except Busy as error:
        assert "shutting down" in str(error)
    with pytest.raises(Busy, match="shutting down"):
        scheduler.submit([Row(image, "x", 4)])


def test_a_started_scheduler_keeps_one_thread(demo_engine):
    before = threading.active_count()
    scheduler = Scheduler(demo_engine, SETTINGS).start()
    assert threading.active_count() == before + 1
    scheduler.stop()
    assert threading.active_count() == before


def test_requests_whose_rows_all_end_in_one_segment(demo_engine, gallery):
    """Rows that reach their limits inside one segment leave together, request by request."""
    short = DecodingConfig(max_new_tokens_thinking=4, max_new_tokens_no_thinking=4)
    scheduler = Scheduler(demo_engine, short, segment=8).start()
    demo_engine.use_scheduler(scheduler)
    try:
        with ThreadPoolExecutor(4) as pool:
            found = list(pool.map(lambda c: demo_engine.answer(*c[:3], settings=short), gallery))
        assert all(a.done and a.tokens <= 4 for answers in found for a in answers.values())
        assert scheduler.running and not scheduler._running
    finally:
        demo_engine.use_scheduler(None)
        scheduler.stop()
