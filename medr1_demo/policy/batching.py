"""Continuous batching: many questions through one policy without waiting for a batch's longest row.

A plain batched `generate` runs until its longest row ends. When thinking answers vary in length,
one rationale running to the 256-token limit keeps the batch's finished rows decoding padding.
Here the batch is advanced a segment (16 tokens) at a time; between segments finished rows leave
(their cache rows are dropped) and waiting requests are prefilled and join, left-padded to the
batch's length. Columns that have become padding in every row are cut.

    for finished in engine.complete_many(requests, batch_size=64):  # (image, prompt, limit)
        for index, text, tokens in finished: ...

`PolicyEngine.complete_many` calls `complete` here when `supported(model)`: Qwen2-VL-style models
whose multimodal rotary offsets (M-RoPE) live in a `rope_deltas` attribute and whose cache is a
DynamicCache of full-attention layers. Greedy results equal those of one row at a time, up to
floating-point differences between batch shapes (see tests/test_continuous.py).
"""

import copy as copy_module
import itertools
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache, LogitsProcessorList, StoppingCriteriaList
from transformers.cache_utils import DynamicLayer

from medr1_demo.policy.generation import RowLimits, generation_errors

SEGMENT = 16  # tokens between exits and joins: short enough to free slots, long enough to amortise


@dataclass
class Batch:
    """The rows being generated. The cache holds every column but the last (not yet fed)."""

    ids: list[int]  # request index of each row
    limits: list[int]  # each row's token limit
    starts: torch.Tensor  # (rows,) column where each row's completion begins
    sequences: torch.Tensor  # (rows, columns) token ids, left-padded
    mask: torch.Tensor  # (rows, columns) 1 for real tokens
    deltas: torch.Tensor  # (rows, 1) each row's M-RoPE position offset, from its prefill
    cache: DynamicCache


def rope_owner(model):
    """The module that keeps the M-RoPE offsets between `generate` steps, or None."""
    for module in model.modules():
        if hasattr(module, "rope_deltas") and hasattr(module, "get_rope_index"):
            return module
    return None


def supported(model) -> bool:
    text_config = getattr(model.config, "text_config", model.config)
    return rope_owner(model) is not None and not getattr(text_config, "use_sliding_window", False)


def complete(engine, requests: Iterable, batch_size: int, settings) -> Iterator[list]:
    """Generate every (image, prompt, limit) request; yields [(index, text, tokens)] per segment."""
    owner = rope_owner(engine.model)
    waiting = enumerate(requests)
    batch, exhausted = None, False
    refill_at = max(1, batch_size // 4)  # prefill in groups, not one row at a time
    if settings.do_sample and settings.seed is not None:
        torch.manual_seed(settings.seed)
    with torch.inference_mode():
        while True:
            free = batch_size - (len(batch.ids) if batch else 0)
            if not exhausted and (free >= refill_at or batch is None):
                group = list(itertools.islice(waiting, free))
                exhausted = len(group) < free
                if group:
                    finished, joining = harvest(engine, prefill(engine, owner, group, settings))
                    if finished:
                        yield _decoded(engine, finished)
                    batch = join(batch, joining, engine.pad_id)
            if batch is None:
                if exhausted:
                    return
                continue
            advance(engine, owner, batch, settings)
            finished, batch = harvest(engine, batch)
            batch = trim(batch)
            if finished:
                yield _decoded(engine, finished)


def _decoded(engine, finished) -> list[tuple[int, str, int]]:
    return [(index, engine.decode(tokens), len(tokens)) for index, tokens in finished]


def generate(engine, settings, tokens: int, starts, limits: list[int], hooks=None, **inputs):
    """One `generate` call of at most `tokens` new tokens, each row stopped at its limit.

    `hooks` (a `Hooks`, optional) sees every step: its streamer the tokens, its processors the
    scores; both follow the batch's row order.
    """
    config = engine.generation_config(settings, [tokens])
    config.return_dict_in_generate = True  # the cache comes back with the sequences
    stop = StoppingCriteriaList([RowLimits(starts, limits, threading.Event())])
    extra = {}
    if hooks is not None:
        extra = {"streamer": hooks.streamer, "logits_processor": hooks.processors}
    with generation_errors():
        return engine.model.generate(
            **inputs, generation_config=config, stopping_criteria=stop, **extra
        )


@dataclass
class Hooks:
    """What watches one `generate` call: a streamer and logits processors (either may be None)."""

    streamer: object = None
    processors: LogitsProcessorList | None = None


def prefill(engine, owner, group, settings, hooks=None) -> Batch:
    """Read the prompts of `group` ([(index, (image, prompt, limit))]) and make their first token."""
    ids = [index for index, _ in group]
    images, prompts, limits = (list(column) for column in zip(*(r for _, r in group), strict=True))
    inputs = engine.model_inputs(images, prompts)
    return prefill_inputs(engine, owner, ids, limits, inputs, settings, hooks)


def prefill_inputs(engine, owner, ids, limits, inputs, settings, hooks=None) -> Batch:
    """As `prefill`, from model inputs already made (one row per id)."""
    length = inputs["input_ids"].shape[1]
    cache = DynamicCache(config=engine.model.config)
    output = generate(engine, settings, 1, length, limits, hooks, **inputs, cache=cache)
    if any(type(layer) is not DynamicLayer for layer in output.cache.layers):
        raise RuntimeError("continuous batching needs a cache of full-attention layers")
    sequences = output.sequences
    mask = F.pad(inputs["attention_mask"], (0, sequences.shape[1] - length), value=1)
    starts = torch.full((len(ids),), length, dtype=torch.long)
    return Batch(ids, limits, starts, sequences, mask, owner.rope_deltas, output.cache)


def advance(engine, owner, batch: Batch, settings, hooks=None, segment: int | None = None) -> None:
    """Generate up to `segment` (default SEGMENT) more tokens for every row of `batch`, in place."""
    columns = batch.sequences.shape[1]
    made = (columns - batch.starts).tolist()
    tokens = min(
        segment or SEGMENT, max(limit - n for limit, n in zip(batch.limits, made, strict=True))
    )
    owner.rope_deltas = batch.deltas  # generate adds these to the text positions of new tokens
    output = generate(
        engine,
        settings,
        tokens,
        batch.starts,
        batch.limits,
        hooks,
        input_ids=batch.sequences,
        attention_mask=batch.mask,
        cache=batch.cache,
    )
    batch.sequences = output.sequences
    batch.mask = F.pad(batch.mask, (0, output.sequences.shape[1] - columns), value=1)
    batch.cache = output.cache


def harvest(engine, batch: Batch, drop=()) -> tuple[list[tuple[int, list[int]]], Batch | None]:
    """The finished rows as (index, generated tokens), and the batch of the rest (None if none).

    Rows whose index is in `drop` (their request was cancelled) leave without being returned.
    """
    finished, keep = [], []
    sequences, starts = batch.sequences.tolist(), batch.starts.tolist()  # one copy off the device
    for row, (index, limit) in enumerate(zip(batch.ids, batch.limits, strict=True)):
        if index in drop:
            continue
        tokens = engine.until_stop(sequences[row][starts[row] :], limit)
        if len(tokens) >= limit or (tokens and tokens[-1] in engine.stop_ids):
            finished.append((index, tokens))
        else:
            keep.append(row)
    return finished, select(batch, keep)


def select(batch: Batch, keep: list[int], copy: bool = False) -> Batch | None:
    """The batch of rows `keep` (positions); None when empty. `copy` leaves `batch` intact."""
    if not keep:
        return None
    if len(keep) == len(batch.ids) and not copy:
        return batch
    rows = torch.tensor(keep, device=batch.sequences.device)
    cache = copy_module.deepcopy(batch.cache) if copy else batch.cache  # copying: rare, on faults
    cache.batch_select_indices(rows)
    return Batch(
        [batch.ids[r] for r in keep],
        [batch.limits[r] for r in keep],
        batch.starts[keep],
        batch.sequences[rows],
        batch.mask[rows],
        batch.deltas[rows],
        cache,
    )


def pad_left(batch: Batch, columns: int, pad_id: int) -> Batch:
    """`batch` with `columns` padding columns in front (masked, zero keys and values)."""
    if columns == 0:
        return batch
    for layer in batch.cache.layers:
        layer.keys = F.pad(layer.keys, (0, 0, columns, 0))
        layer.values = F.pad(layer.values, (0, 0, columns, 0))
    batch.sequences = F.pad(batch.sequences, (columns, 0), value=pad_id)
    batch.mask = F.pad(batch.mask, (columns, 0), value=0)
    batch.starts = batch.starts + columns
    return batch


def join(batch: Batch | None, joining: Batch | None, pad_id: int) -> Batch | None:
    """One batch of the rows of both, aligned on their last column."""
    if batch is None or joining is None:
        return batch or joining
    columns = max(batch.sequences.shape[1], joining.sequences.shape[1])
    a = pad_left(batch, columns - batch.sequences.shape[1], pad_id)
    b = pad_left(joining, columns - joining.sequences.shape[1], pad_id)
    for layer, other in zip(a.cache.layers, b.cache.layers, strict=True):
        layer.keys = torch.cat([layer.keys, other.keys])
        layer.values = torch.cat([layer.values, other.values])
    return Batch(
        a.ids + b.ids,
        a.limits + b.limits,
        torch.cat([a.starts, b.starts]),
        torch.cat([a.sequences, b.sequences]),
        torch.cat([a.mask, b.mask]),
        torch.cat([a.deltas, b.deltas]),
        a.cache,
    )


def trim(batch: Batch | None) -> Batch | None:
    """`batch` without the leading columns that are padding in every row."""
    if batch is None:
        return None
    columns = int(batch.mask.any(dim=0).int().argmax())  # the first column some row uses
    if columns == 0:
        return batch
    for layer in batch.cache.layers:
        layer.keys = layer.keys[:, :, columns:]
        layer.values = layer.values[:, :, columns:]
    batch.sequences = batch.sequences[:, columns:]
    batch.mask = batch.mask[:, columns:]
    batch.starts = batch.starts - columns
    return batch
