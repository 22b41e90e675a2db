"""Med-R1's rewards for TRL's GRPOTrainer: accuracy and format (thinking / no-thinking), by name.

Each reward is a plain function `(completions, solution, **kwargs) -> list[float]` returning 0.0 or
1.0 per completion, exactly as Med-R1 scored them; the readings themselves live in
`medr1_demo.protocol` so that the app, the evaluator and the rewards agree:

- accuracy: `protocol.medr1_answer_text(completion) == protocol.solution_letter(solution)`;
- format: `protocol.has_mode_format(completion, mode)` (the whole completion must match).

When one run trains both modes (`mode: both`), each dataset row carries its own `mode`, which TRL
passes to every reward as a keyword argument; `format` then resolves to `format_reward`, which
checks each completion against its own row's mode.

TRL logs each function under its `__name__` (`rewards/accuracy_reward/mean`, ...), and the recipe
weighs them with `reward_weights` (same order as `reward_funcs`). Choose them by registry name:

    >>> [f.__name__ for f in resolve_rewards(["accuracy", "format"], mode="no-thinking")]
    ['accuracy_reward', 'format_no_thinking_reward']

A recipe may also name a function of its own as `package.module:function`.
"""

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from medr1_demo import protocol
from trainer.train.data import BOTH, TRAINING_MODES

RewardFunc = Callable[..., list[float]]
Completion = str | list[dict[str, Any]]


def completion_text(completion: Completion) -> str:
    """The text of one completion: TRL's `[{"role": "assistant", "content": ...}]` or a string."""
    if isinstance(completion, str):
        return completion
    message = completion[-1] if completion else {}
    content = message.get("content", "")
    if isinstance(content, list):  # structured content: keep only the text parts, in order
        return "".join(part.get("text") or "" for part in content if part.get("type") == "text")
    return content or ""


def accuracy_reward(completions: list[Completion], solution: list[str], **kwargs) -> list[float]:
    """1.0 when the first `<answer>` (or the whole text, without a tag) equals the true letter.

    No partial credit and no case folding, as in Med-R1:

    >>> accuracy_reward(
    ...     [[{"role": "assistant", "content": "<answer> C </answer>"}], "<answer>c</answer>"],
    ...     solution=["<answer> C </answer>", "<answer> C </answer>"],
    ... )
    [1.0, 0.0]
    """
    return [
        float(protocol.medr1_answer_text(completion_text(c)) == protocol.solution_letter(s))
        for c, s in zip(completions, solution, strict=True)
    ]


def format_thinking_reward(completions: list[Completion], **kwargs) -> list[float]:
    """1.0 when the whole completion is `<think>...</think>` then `<answer>...</answer>`.

    >>> format_thinking_reward(["<think>a CT slice</think>\\n<answer>C</answer>", "<answer>C</answer>"])
    [1.0, 0.0]
    """
    return [
        float(protocol.has_mode_format(completion_text(c), protocol.THINKING)) for c in completions
    ]


def format_no_thinking_reward(completions: list[Completion], **kwargs) -> list[float]:
    """1.0 when the whole completion is one `<answer>...</answer>` (leading whitespace allowed).

    >>> format_no_thinking_reward(["  <answer>C</answer>", "<answer>C</answer> because"])
    [1.0, 0.0]
    """
    return [
        float(protocol.has_mode_format(completion_text(c), protocol.NO_THINKING))
        for c in completions
    ]


def format_reward(completions: list[Completion], mode: list[str], **kwargs) -> list[float]:
    """Med-R1's format reward of each row's own mode (the `mode` column of a `mode: both` run).

    >>> format_reward(
    ...     ["<think>a CT slice</think> <answer>C</answer>", "<think>a CT slice</think> <answer>C</answer>"],
    ...     mode=["thinking", "no-thinking"],
    ... )
    [1.0, 0.0]
    """
    return [
        float(protocol.has_mode_format(completion_text(c), m))
        for c, m in zip(completions, mode, strict=True)
    ]


REWARDS: dict[str, RewardFunc] = {
    "accuracy": accuracy_reward,
    "format_thinking": format_thinking_reward,
    "format_no_thinking": format_no_thinking_reward,
}
# "format" means the format reward of the mode being trained; when both modes are trained, the
# per-row reward, which needs the `mode` column (so it is not a registry entry of its own).
FORMAT_BY_MODE = {protocol.THINKING: "format_thinking", protocol.NO_THINKING: "format_no_thinking"}
MODE_DEPENDENT = {"format": FORMAT_BY_MODE}
PER_ROW = {"format": format_reward}


def resolve_reward(name: str, mode: str) -> RewardFunc:
    """One reward by registry name (`accuracy`, `format`, `format_thinking`, ...) or `module:function`."""
    if name in MODE_DEPENDENT:
        if mode not in TRAINING_MODES:
            raise ValueError(f"mode must be one of {TRAINING_MODES}, not {mode!r}")
        if mode == BOTH:
            return PER_ROW[name]
        name = MODE_DEPENDENT[name][mode]
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            reward = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"reward {name!r} cannot be imported: {err}") from err
        if not callable(reward):
            raise ValueError(f"reward {name!r} is not a function")
        return reward
    known = ", ".join([*REWARDS, *MODE_DEPENDENT])
    raise ValueError(f"unknown reward {name!r}; choose from {known}, or give module:function")


def resolve_rewards(names: Sequence[str], mode: str) -> list[RewardFunc]:
    """The reward functions for a recipe's `reward_funcs`, in order (weights follow that order)."""
    if not names:
        raise ValueError("reward_funcs is empty; name at least one reward (e.g. accuracy, format)")
    return [resolve_reward(name, mode) for name in names]
