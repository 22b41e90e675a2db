"""Where each mode looked: a relevance map over the picture for the answer letter it chose.

Method: **gradient x input on the visual tokens**. A mode's answer is read again with its own
output as teacher-forced context: the prompt (picture + question), then the completion up to the
answer letter (in thinking mode, the rationale included). The target is the log-probability of
the chosen letter among the question's letters at that position, the number the option bars show.
Its gradient with respect to the visual tokens (the vision merger's output: the `inputs_embeds`
rows at the image-token positions), times those tokens, summed in absolute value over the hidden
size, gives one number per merged token (a 28 x 28 pixel patch for Qwen2-VL). The numbers are laid
out on the merged patch grid (`image_grid_thw` / merge size), top row first, and normalised to
shares that sum to 1; the page draws them over the picture the policy saw.

Why this method and not attention rollout: it costs one forward and one backward pass per mode;
it explains the letter that was chosen (rollout follows attention, which is nearly the same
whatever the answer); and it needs no attention weights, which the SDPA and flash kernels do not
return, nor hooks on the shared model, so it runs beside the shared batch through any attention
implementation or LoRA adapter. What it does not know: gradients are local (a saturated token can
matter and show little), and a bright region is where the answer was sensitive, not proof that a
finding is there; it is the model's view, not a clinical one.

    maps = relevance.with_maps(engine, picture, question, answers)  # mode -> ModeAnswer + map
    found = relevance.relevance_map(engine, picture, prompt, completion, n_options=4)

`python -m trainer eval --maps` scores these maps against the regions the phantom generator drew
(`trainer.eval.maps`); `benchmarks/bench_maps.py` measures their cost against the answer's.
"""

import inspect
import logging
import time
from dataclasses import replace

import torch

from medr1_demo.policy.letters import answer_step, letter_slots
from medr1_demo.protocol import Question, build_prompt
from medr1_demo.results import ModeAnswer, RelevanceMap

logger = logging.getLogger(__name__)

METHOD = "gradient x input"
LEVELS = ("tokens", "pixels")
FAILED = "The map could not be computed for this answer; the answer itself is unaffected."


class RelevanceError(Exception):
    """A map cannot be computed; str(err) says why in plain words."""


def relevance_map(
    engine, image, prompt: str, completion, n_options: int, level: str = "tokens"
) -> RelevanceMap:
    """The map of the answer letter in `completion` (its text or token ids) for `prompt`.

    `image` is the scan as the engine receives it (`engine.model_inputs` makes it the picture the
    policy trained on); a completion without an answer letter gives a map with only a `problem`.
    """
    started = time.perf_counter()
    tokenizer = engine.processor.tokenizer
    tokens = (
        tokenizer.encode(completion, add_special_tokens=False)
        if isinstance(completion, str)
        else list(completion)
    )
    found = answer_step(tokens, engine.decode)
    if isinstance(found, str):
        return RelevanceMap(None, None, METHOD, found)
    step, prefix, rest = found
    chosen = tokens[step]
    letter = engine.decode([chosen])[len(prefix)].upper()
    slots = letter_slots(engine.letter_forms, prefix, rest, n_options)
    choices = None if slots is None else [engine.letter_forms.ids[slot] for slot in slots]
    with engine.lock:  # beside the engine's own generation, one at a time
        inputs = engine.model_inputs([image], [prompt])
        scores = visual_relevance(engine.model, inputs, tokens[:step], chosen, choices, level)
    total = float(scores.sum())
    if not total > 0:
        return RelevanceMap(None, letter, METHOD, "No part of the picture moved this answer.")
    grid = tuple(tuple(round(float(v) / total, 5) for v in row) for row in scores.tolist())
    return RelevanceMap(grid, letter, METHOD, seconds=round(time.perf_counter() - started, 3))


def visual_relevance(model, inputs, context: list[int], target: int, choices=None,
                     level: str = "tokens") -> torch.Tensor:  # fmt: skip
    """|gradient x input| per merged visual token, as a (rows, columns) tensor on the CPU.

    `inputs`: one row from the processor (`input_ids`, `pixel_values`, `image_grid_thw`, ...);
    `context`: the completion's tokens before the answer; `target`: the answer token, whose
    log-probability (among `choices` when given, else over the vocabulary) is explained.
    `level`: "tokens" takes the input to be the visual tokens the language model reads (the
    merger's output); "pixels" the picture's normalised pixels, through the vision tower (its
    backward pass costs more; summed per merged token the same way).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner, config = base.model, base.config
    prompt_ids = inputs["input_ids"][:1]
    extra = torch.tensor([context], dtype=prompt_ids.dtype, device=prompt_ids.device)
    ids = torch.cat([prompt_ids, extra.view(1, -1)], dim=1)
    mask = torch.ones_like(ids)
    grid_thw = inputs["image_grid_thw"][:1]
    merge = int(config.vision_config.spatial_merge_size)
    t, h, w = (int(v) for v in grid_thw[0].tolist())
    with torch.inference_mode(False), torch.enable_grad():
        pixels = inputs["pixel_values"][: t * h * w].detach().clone()
        pixels.requires_grad_(level == "pixels")
        # visual tokens as the input: the vision tower's own graph is not needed, so not built
        with torch.set_grad_enabled(level == "pixels"):
            features = inner.get_image_features(pixels, grid_thw)
        features = getattr(features, "pooler_output", features)  # transformers >= 5: a tuple
        if isinstance(features, tuple | list):
            features = torch.cat(list(features), dim=0)
        embeds = inner.get_input_embeddings()(ids).detach()
        features = features.to(embeds.dtype)
        if level == "tokens":
            features = features.detach().requires_grad_(True)
        where = (ids[0] == config.image_token_id).nonzero().squeeze(-1)
        if len(where) != features.shape[0]:
            raise RelevanceError("The picture's tokens could not be matched to the prompt.")
        embeds = embeds.index_put((torch.zeros_like(where), where), features)
        positions = _positions(inner, ids, mask, grid_thw, config.image_token_id)
        logits = base(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False
        ).logits[0, -1]
        logits = logits.float()
        if choices and target in choices:
            logprob = torch.log_softmax(logits[choices], dim=-1)[choices.index(target)]
        else:
            logprob = torch.log_softmax(logits, dim=-1)[target]
        x = features if level == "tokens" else pixels
        (gradient,) = torch.autograd.grad(logprob, x)
    scores = (gradient.float() * x.detach().float()).abs()
    # Patches come merge x merge at a time, one merged token each (the processor's order).
    scores = scores.reshape(t * (h // merge) * (w // merge), -1).sum(dim=-1).cpu()
    return scores.view(t, h // merge, w // merge).sum(dim=0)


def _positions(inner, ids, mask, grid_thw, image_token_id):
    """Qwen2-VL's 3-D rotary positions for `ids` (the picture's tokens get row/column places)."""
    accepted = inspect.signature(inner.get_rope_index).parameters
    kwargs = {"image_grid_thw": grid_thw, "attention_mask": mask}
    if "mm_token_type_ids" in accepted:  # transformers >= 5: 1 marks image tokens
        kwargs["mm_token_type_ids"] = (ids == image_token_id).to(torch.int)
    positions, _ = inner.get_rope_index(ids, **kwargs)
    return positions


def with_maps(engine, image, question: Question, answers: dict[str, ModeAnswer]
              ) -> dict[str, ModeAnswer]:  # fmt: skip
    """`answers` with each mode's relevance map; a map that fails says so and the answer stays.
    Each mode is explained under the training prompt the engine asked it with."""
    found = {}
    for mode, answer in answers.items():
        if answer.letter is None:
            shown = RelevanceMap(None, None, METHOD, "There is no answer letter to explain.")
        else:
            prompt = build_prompt(question.formatted, mode)
            try:
                shown = relevance_map(engine, image, prompt, answer.raw, len(question.options))
            except Exception as error:  # a map never costs the answer
                logger.warning("relevance map failed: %s", type(error).__name__)
                shown = RelevanceMap(None, answer.letter, METHOD, FAILED)
        found[mode] = replace(answer, relevance=shown)
    return found
