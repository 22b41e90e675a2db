"""One running batch for everyone: requests from all users share the policy's generation.

The scheduler owns the model in one thread. A request is a few rows (its modes, the trust-aid
controls) submitted as a `Ticket`; its model inputs are made in the caller's thread (a picture that
cannot be prepared fails there, alone). Between segments of a few tokens, waiting tickets are
prefilled and join the running batch, first come first served, and finished rows leave
(`medr1_demo.policy.batching` does the joining, trimming and leaving). Every step's tokens stream
to their ticket as they are made; a ticket that is cancelled (its client went away) leaves at the
next segment. Greedy rows come out exactly as they would alone (tests/test_scheduler.py).

    scheduler = Scheduler(engine, settings).start()
    ticket = scheduler.submit([Row(image, prompt, 32), ...])   # Busy when the queue is full
    for update in ticket: ...                                  # RowsUpdate, the last one done
    scheduler.stop()

What it does not do: mix decoding settings (one DecodingConfig for all rows), or run where a GPU
exists only inside one call (ZeroGPU): there the engine generates per request instead.
"""

import itertools
import logging
import queue
import threading
import time

import torch
from transformers import LogitsProcessorList
from transformers.generation.streamers import BaseStreamer

from medr1_demo.config import DecodingConfig
from medr1_demo.policy import batching
from medr1_demo.policy.generation import GenerationError, Row, RowsUpdate
from medr1_demo.policy.letters import LetterRecorder
from medr1_demo.results import Busy

logger = logging.getLogger(__name__)
SEGMENT = 8  # tokens between joins: short enough that a new request starts soon
BUSY = "The model is busy answering other people's questions; please try again in a moment."
STOPPED = "The server is shutting down; please try again in a moment."


class Ticket:
    """One request's rows in the scheduler; iterate it for its updates."""

    def __init__(self, key: int, rows: list[Row], inputs, stop_ids: set[int], stream=True):
        self.key, self.rows, self.inputs, self.stop_ids = key, rows, inputs, stop_ids
        self.stream = stream  # False: only the final update (nothing copied per step)
        self.start = time.perf_counter()
        self.tokens: list[list[int]] = [[] for _ in rows]
        self.finished: list[float | None] = [None] * len(rows)
        self.harvested: set[int] = set()
        self.cancelled = threading.Event()
        self.error: Exception | None = None
        self._updates: queue.SimpleQueue = queue.SimpleQueue()

    def row_keys(self) -> list[tuple[int, int]]:
        return [(self.key, row) for row in range(len(self.rows))]

    # ---- called by the scheduler thread
    def step(self, row: int, token: int) -> None:
        """A token streamed for `row` (ignored once the row has stopped)."""
        if self.finished[row] is not None:
            return
        self.tokens[row].append(token)
        if token in self.stop_ids or len(self.tokens[row]) >= self.rows[row].limit:
            self.finished[row] = time.perf_counter() - self.start

    def publish(self) -> None:
        if not self.stream:
            return
        self._updates.put(RowsUpdate([list(t) for t in self.tokens], list(self.finished)))

    def row_done(self, row: int, tokens: list[int]) -> None:
        self.tokens[row] = list(tokens)  # the batch's own record is the reference
        self.harvested.add(row)
        if self.finished[row] is None:
            self.finished[row] = time.perf_counter() - self.start

    @property
    def complete(self) -> bool:
        """Every row has left the batch (streaming may mark a row finished a little earlier)."""
        return len(self.harvested) == len(self.rows)

    def finish(self, steps: list[list[list[float]]]) -> None:
        self._updates.put(RowsUpdate(self.tokens, self.finished, True, steps))
        self._updates.put(None)

    def fail(self, error: Exception) -> None:
        self.error = error
        self._updates.put(None)

    # ---- called by the requester
    def cancel(self) -> None:
        self.cancelled.set()

    def __iter__(self):
        """The updates, newest first when several are waiting; raises the ticket's error."""
        try:
            while True:
                update = self._updates.get()
                while update is not None and not update.done:  # skip a backlog of partials
                    try:
                        update = self._updates.get_nowait()
                    except queue.Empty:
                        break
                if update is None:
                    break
                yield update
                if update.done:
                    return
            if self.error is not None:
                raise self.error
        finally:
            self.cancel()  # a consumer that stops early gives its rows up


class _Steps(BaseStreamer):
    """Hands each generated token of each row to its ticket; the first `put` is the prompt."""

    def __init__(self, owners: list[tuple["Ticket", int]]):
        self.owners, self._prompt_seen = owners, False

    def put(self, value):
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        tickets = {}
        for (ticket, row), token in zip(
            self.owners, value.reshape(len(self.owners), -1)[:, -1].tolist(), strict=True
        ):
            ticket.step(row, token)
            tickets[ticket.key] = ticket
        for ticket in tickets.values():
            ticket.publish()

    def end(self):
        pass


class Scheduler:
    """The policy's generation loop, shared by every request (see the module docstring)."""

    def __init__(
        self,
        engine,
        settings: DecodingConfig | None = None,
        *,
        max_rows: int = 32,
        queue_size: int = 64,
        segment: int = SEGMENT,
    ):
        if not batching.supported(engine.model):
            raise ValueError("this model cannot be batched continuously; answer per request")
        self.engine, self.settings = engine, settings or DecodingConfig()
        self.max_rows, self.queue_size, self.segment = max_rows, queue_size, segment
        self.owner = batching.rope_owner(engine.model)
        self._numbers = itertools.count()
        self._waiting: list[Ticket] = []
        self._running: dict[int, Ticket] = {}
        self._batch: batching.Batch | None = None
        self._steps: dict[tuple[int, int], list] = {}
        self._wake = threading.Condition()
        # Model inputs are made one request at a time: preparing them is mostly Python (it holds
        # the GIL), so requests prepared side by side would all be ready late, the first too.
        self._preparing = threading.Lock()
        self._stopping = False
        self._draining = False  # no new requests; stop once the last one has finished
        self._thread = threading.Thread(target=self._loop, name="policy-scheduler", daemon=True)

    # ------------------------------------------------------------------------------ requests

    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0, drain: bool = False) -> None:
        """End the loop: new requests are refused; with `drain` the queued and running ones
        finish first (in the background), else they get a plain 'shutting down' sentence."""
        with self._wake:
            self._draining = True
            if not drain:
                self._stopping = True
            self._wake.notify_all()
        if not drain and self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopping and not self._draining

    def submit(self, rows: list[Row], stream: bool = True) -> Ticket:
        """Queue `rows` (one request); Busy when the queue is full, GenerationError when the
        rows cannot be prepared (e.g. a picture the processor refuses). Without `stream` the
        ticket yields its final update only."""
        if not rows:
            raise ValueError("a request needs at least one row")
        with self._wake:
            if self._stopping or self._draining:
                raise Busy(STOPPED)
            if len(self._waiting) >= self.queue_size:
                raise Busy(BUSY)
        with self._preparing:
            inputs = self.engine.model_inputs([r.image for r in rows], [r.prompt for r in rows])
        ticket = Ticket(next(self._numbers), rows, inputs, self.engine.stop_ids, stream)
        with self._wake:
            if len(self._waiting) >= self.queue_size:
                raise Busy(BUSY)
            self._waiting.append(ticket)
            self._wake.notify_all()
        return ticket

    # ---------------------------------------------------------------------------------- loop

    def _loop(self) -> None:
        try:
            with torch.inference_mode():
                while True:
                    with self._wake:
                        while not self._stopping and not self._waiting and self._batch is None:
                            if self._draining:  # nothing left to finish
                                self._stopping = True
                                break
                            self._wake.wait()
                        if self._stopping:
                            break
                        joining = self._take()
                    try:
                        for ticket in joining:
                            self._prefill(ticket)
                        if self._batch is not None:
                            self._advance_all()
                        if self._batch is not None:
                            self._harvest()
                    except Exception as error:  # a bug here must not stop serving others later
                        logger.exception("the scheduler lost its batch")
                        for ticket in list(self._running.values()):
                            self._fail(ticket, error)
                        self._batch = None
        finally:
            self._fail_everything(Busy(STOPPED))

    def _take(self) -> list[Ticket]:
        """Waiting tickets that fit beside the running rows, in arrival order."""
        used = len(self._batch.ids) if self._batch is not None else 0
        taken = []
        while self._waiting:
            need = len(self._waiting[0].rows)
            if used and used + need > self.max_rows:
                break  # first come first served: a later, smaller request does not overtake
            ticket = self._waiting.pop(0)
            used += need
            if not ticket.cancelled.is_set():
                taken.append(ticket)
        return taken

    def _hooks(self, keys) -> batching.Hooks:
        owners = [(self._running[key[0]], key[1]) for key in keys]
        recorder = LetterRecorder(self.engine.letter_forms.ids, keys, self._steps)
        return batching.Hooks(_Steps(owners), LogitsProcessorList([recorder]))

    def _prefill(self, ticket: Ticket) -> None:
        self._running[ticket.key] = ticket
        keys = ticket.row_keys()
        try:
            part = batching.prefill_inputs(
                self.engine, self.owner, keys, [r.limit for r in ticket.rows], ticket.inputs,
                self.settings, self._hooks(keys),
            )  # fmt: skip
        except Exception as error:  # this request alone fails; the running batch is untouched
            self._fail(ticket, error)
            return
        ticket.inputs = None  # the prompt now lives in the batch's cache
        finished, part = batching.harvest(self.engine, part)
        self._record(finished)
        self._batch = batching.join(self._batch, part, self.engine.pad_id)

    def _advance(self, batch: batching.Batch) -> None:
        batching.advance(
            self.engine, self.owner, batch, self.settings, self._hooks(batch.ids), self.segment
        )

    def _advance_all(self) -> None:
        batch = self._batch
        try:
            self._advance(batch)
            return
        except Exception:  # find whose rows fail: advance each request alone
            logger.warning("a shared batch failed; retrying its requests one by one")
        cached = batch.sequences.shape[1] - 1  # the cache holds every column but the last
        for layer in batch.cache.layers:  # undo what the failed call cached, layer by layer
            layer.keys, layer.values = layer.keys[:, :, :cached], layer.values[:, :, :cached]
        survivors = None
        for key in dict.fromkeys(k[0] for k in batch.ids):
            rows = [i for i, k in enumerate(batch.ids) if k[0] == key]
            alone = batching.select(batch, rows, copy=True)
            try:
                self._advance(alone)
            except Exception as error:
                self._fail(self._running[key], error)
                continue
            survivors = batching.join(survivors, alone, self.engine.pad_id)
        self._batch = survivors

    def _harvest(self) -> None:
        gone = {k for k in self._batch.ids if self._running[k[0]].cancelled.is_set()}
        finished, self._batch = batching.harvest(self.engine, self._batch, drop=gone)
        self._batch = batching.trim(self._batch)
        for key in {k[0] for k in gone}:
            self._forget(self._running.pop(key))
        self._record(finished)

    def _record(self, finished) -> None:
        touched = {}
        for (key, row), tokens in finished:
            touched[key] = self._running[key]
            touched[key].row_done(row, tokens)
        for key, ticket in touched.items():
            if ticket.complete:
                ticket.finish([self._steps.get(k, []) for k in ticket.row_keys()])
                self._forget(self._running.pop(key))

    def _forget(self, ticket: Ticket) -> None:
        for key in ticket.row_keys():
            self._steps.pop(key, None)

    def _fail(self, ticket: Ticket, error: Exception) -> None:
        self._running.pop(ticket.key, None)
        self._forget(ticket)
        if not isinstance(error, GenerationError | Busy):
            error = GenerationError(f"Generation failed: {error}")
        ticket.fail(error)

    def _fail_everything(self, error: Exception) -> None:
        with self._wake:
            self._stopping = True
            waiting, self._waiting = self._waiting, []
        for ticket in [*waiting, *self._running.values()]:
            self._fail(ticket, error)
        self._batch = None
