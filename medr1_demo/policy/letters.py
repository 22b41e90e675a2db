"""How sure a mode is: the probability the policy gave each option letter where it wrote its answer.

While a row generates, `LetterRecorder` (a logits processor, so it sees the model's own
distribution before any sampling warp) keeps, at every step, the log-probabilities of the tokens
that can start an answer letter: `A`..`H` bare and after a space, a newline or the tag's `>`.
After the row ends, `option_probabilities` finds the step where the letter was written (the first
non-whitespace character after the first `<answer>`; in thinking mode that is after the policy's
own rationale) and reads the letters there in the form the policy used (`C`, ` C` or `>C`),
normalised over the question's letters. Greedy decoding picks the most likely token, so a greedy
answer is always the most probable letter.

What it does not know: whether the probability is right. It is the model's own confidence, not a
clinical certainty; calibration is what `trainer eval --checks` measures.

    recorder = LetterRecorder(forms.ids, rows=len(prompts))
    model.generate(..., logits_processor=LogitsProcessorList([recorder]))
    probs = option_probabilities(tokens, recorder.steps[row], forms, n_options=4, decode=decode)
"""

import math
import re
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor

from medr1_demo.protocol import LETTERS

# What may stand between `<answer>` and the letter inside one token, by tokenizer.
PREFIXES = ("", " ", "\n", ">", "> ")
_TAG = "<answer>"
_AFTER_TAG = re.compile(re.escape(_TAG) + r"(\s*)(\S)")


@dataclass(frozen=True)
class LetterForms:
    """The single-token forms of each letter: (prefix, letter) -> token id, where one exists."""

    ids: tuple[int, ...]  # every recorded token id, in recording order
    index: dict[tuple[str, str], int]  # (prefix, letter) -> position in `ids`

    @classmethod
    def of(cls, tokenizer) -> "LetterForms":
        ids, index = [], {}
        for prefix in PREFIXES:
            for letter in LETTERS:
                encoded = tokenizer.encode(prefix + letter, add_special_tokens=False)
                if len(encoded) == 1:
                    if encoded[0] not in ids:
                        ids.append(encoded[0])
                    index[(prefix, letter)] = ids.index(encoded[0])
        return cls(tuple(ids), index)


class LetterRecorder(LogitsProcessor):
    """Keeps each row's log-probabilities of the letter forms, one entry per generated step.

    `keys` names the rows of the batch in order (they may be request ids); `steps[key]` grows by
    one entry per step. Rows that already stopped keep being recorded; those steps are never read.
    """

    def __init__(self, ids: tuple[int, ...], keys, steps: dict | None = None):
        self.keys = list(keys)
        self.ids = torch.tensor(ids, dtype=torch.long)
        self.steps = {key: [] for key in self.keys} if steps is None else steps
        for key in self.keys:
            self.steps.setdefault(key, [])

    def __call__(self, input_ids, scores):
        if len(self.ids):
            logprobs = torch.log_softmax(scores.float(), dim=-1)[:, self.ids.to(scores.device)]
            for key, row in zip(self.keys, logprobs.cpu().tolist(), strict=True):
                self.steps[key].append(row)
        return scores


@dataclass(frozen=True)
class OptionProbabilities:
    """The letter distribution at the answer, or why there is none."""

    probabilities: dict[str, float] | None  # letter -> probability, summing to 1 over options
    mass: float | None  # share of the model's whole distribution on these letters there
    problem: str | None = None  # why there are no probabilities, in plain words


def answer_step(tokens: list[int], decode) -> tuple[int, str, str] | str:
    """(step, prefix, rest) of the token holding the answer letter, or why there is none.

    `prefix` is what the token holds before the letter (e.g. ">" or " "), `rest` what follows it.
    """
    text = ""
    for step, token in enumerate(tokens):
        piece = decode([token])
        before, text = text, text + piece
        match = _AFTER_TAG.search(text)
        if match is None:
            continue
        start = match.start(2)  # the letter's position in `text`
        if start < len(before):  # the letter was written by an earlier token: cannot happen
            return "The answer could not be located in the output."
        offset = start - len(before)
        return step, piece[:offset], piece[offset + 1 :]
    if _TAG in text:
        return "The output has an <answer> tag but no letter in it."
    return "The output has no <answer> tag, so there is no answer to weigh."


def letter_slots(forms: LetterForms, prefix: str, rest: str, n_options: int) -> list[int] | None:
    """Where each of the question's letters, written after `prefix` in one token, sits among the
    recorded letter forms (`forms.ids`); None when this tokenizer writes some in several pieces."""
    letters = LETTERS[:n_options]
    if rest or any((prefix, letter) not in forms.index for letter in letters):
        return None
    return [forms.index[(prefix, letter)] for letter in letters]


def option_probabilities(
    tokens: list[int], steps: list[list[float]], forms: LetterForms, n_options: int, decode
) -> OptionProbabilities:
    """The probability of each of the question's letters where the row wrote its answer."""
    found = answer_step(tokens, decode)
    if isinstance(found, str):
        return OptionProbabilities(None, None, found)
    step, prefix, rest = found
    letters = LETTERS[:n_options]
    slots = letter_slots(forms, prefix, rest, n_options)
    if slots is None:
        return OptionProbabilities(
            None, None, "This tokenizer writes some option letters in several pieces here."
        )
    if step >= len(steps):
        return OptionProbabilities(None, None, "No scores were recorded for this answer.")
    logprobs = [steps[step][slot] for slot in slots]
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    probabilities = {letter: w / total for letter, w in zip(letters, weights, strict=True)}
    mass = sum(math.exp(lp) for lp in logprobs)
    return OptionProbabilities(probabilities, min(1.0, mass))
