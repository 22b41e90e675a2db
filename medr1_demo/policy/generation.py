"""What every `generate` call of the policy shares: settings, per-row stops, streaming, errors.

Both ways of generating use these: the engine's batches (`medr1_demo.policy.engine`, one batch per
question, streamed to the page) and continuous batching (`medr1_demo.policy.batching`, many
questions joining and leaving one running batch). Nothing here knows about questions or modes.

    config = generation_config(model, settings, limits, pad_id, stop_ids)
    with generation_errors():
        model.generate(**inputs, generation_config=config,
                       stopping_criteria=StoppingCriteriaList([RowLimits(start, limits, cancel)]))
"""

import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import GenerationConfig, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from medr1_demo.config import DecodingConfig


@dataclass(frozen=True)
class Row:
    """One row to generate: a picture, the user turn's text (`protocol.build_prompt`), a limit."""

    image: Image.Image
    prompt: str
    limit: int


@dataclass(frozen=True)
class RowsUpdate:
    """A ticket's rows so far: tokens and finish times (seconds since the start); `done` at the end.

    `steps` (the final update only): each row's recorded letter log-probabilities per step.
    """

    tokens: list[list[int]]
    finished: list[float | None]
    done: bool = False
    steps: list[list[list[float]]] | None = None


class GenerationError(RuntimeError):
    """Generation failed (out of memory, an unreadable image, ...); str(err) says why plainly."""


@contextmanager
def generation_errors():
    """Turns what `generate` raises into GenerationError with a plain-words reason."""
    try:
        yield
    except torch.OutOfMemoryError as error:
        raise GenerationError(
            "The GPU ran out of memory while answering; try fewer new tokens, a smaller batch or a "
            "smaller image."
        ) from error
    except (RuntimeError, ValueError, IndexError) as error:
        raise GenerationError(f"Generation failed: {error}") from error


class RowLimits(StoppingCriteria):
    """Stops each row at its own token limit, so short rows free the batch as they finish.

    `starts` is the column where the completions begin: one for the batch, or one per row.
    """

    def __init__(self, starts: int | torch.Tensor, limits: list[int], cancel: threading.Event):
        self.starts, self.cancel = starts, cancel
        self.limits = torch.tensor(limits)

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        if self.cancel.is_set():  # the consumer went away: end the whole batch now
            return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        generated = input_ids.shape[1] - torch.as_tensor(self.starts).cpu()
        return (generated >= self.limits).to(input_ids.device)


def generation_config(
    model, settings: DecodingConfig, limits: list[int], pad_id: int, stop_ids: set[int]
) -> GenerationConfig:
    """`generate`'s settings for a batch whose rows stop at `limits` (the longest decides)."""
    config = GenerationConfig.from_dict(model.generation_config.to_dict())
    sampling = (
        {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
        if settings.do_sample
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    config.update(
        max_new_tokens=max(limits),
        min_new_tokens=max(limits) if settings.exact_length else None,
        pad_token_id=pad_id,
        eos_token_id=sorted(stop_ids),
        **sampling,
    )
    return config


def until_stop(tokens: list[int], limit: int, stop_ids: set[int]) -> list[int]:
    """A row's generated tokens up to and including its first stop token, at most `limit`."""
    for index, token in enumerate(tokens[:limit]):
        if token in stop_ids:
            return tokens[: index + 1]
    return tokens[:limit]


class BatchStreamer(BaseStreamer):
    """Receives every step's tokens for all rows; keeps each row's tokens until its stop or limit.

    `generate` calls `put` with the prompt first, then once per step with one token per row, then
    `end`. Each step's state goes to `updates` (a queue) as (tokens per row, finish times); the
    times are seconds since `start`.
    """

    def __init__(self, limits: list[int], stop_ids: set[int], start: float | None = None):
        self.limits, self.stop_ids = limits, stop_ids
        self.start = time.perf_counter() if start is None else start
        self.tokens: list[list[int]] = [[] for _ in limits]
        self.finished: list[float | None] = [None] * len(limits)
        self.updates: queue.SimpleQueue = queue.SimpleQueue()
        self._prompt_seen = False

    def put(self, value):
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        now = time.perf_counter() - self.start
        for row, token in enumerate(value.reshape(len(self.limits), -1)[:, -1].tolist()):
            if self.finished[row] is not None:
                continue
            self.tokens[row].append(token)
            if token in self.stop_ids or len(self.tokens[row]) >= self.limits[row]:
                self.finished[row] = now
        self.updates.put(([list(t) for t in self.tokens], list(self.finished)))

    def end(self):
        self.updates.put(None)

    def newest(self):
        """The newest update, waiting for one; None once generation ended (skips any backlog)."""
        update = self.updates.get()
        while update is not None:
            try:
                newer = self.updates.get_nowait()
            except queue.Empty:
                return update
            update = newer
        return None
