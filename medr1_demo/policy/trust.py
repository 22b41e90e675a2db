"""Trust aids: the controls asked beside an answer, and what their outcome says. No torch here.

Two controls, each the same question asked once more in the same batch as the real answer:

- **image** ("without the image"): the scan replaced by a featureless mid-grey picture of the same
  size. When the answer stays the same and the option distribution barely moves (total variation
  distance below `IMAGE_TV_THRESHOLD`), the answer did not depend on the image.
- **order** ("options reordered"): the options rotated by one place (a derangement: no option
  keeps its letter). Mapped back to option texts, the answer either holds (same option text), or
  follows the position (same letter, so another option), or changes to a third option.

Rationale consistency (thinking mode) needs no extra row: `protocol.rationale_conclusion` reads
which option the rationale concludes with, and it is compared with the answer.

What these do not measure: whether the answer is right. An answer that holds without the image is
not wrong for that (some questions can be answered from the text), and one that holds when the
options move can still be wrong.

    grey = grey_image(scan)                      # the control's picture
    question2, back = rotated(question)          # back[letter in question2] -> original letter
    check = image_check(real_letter, real_probs, grey_letter, grey_probs, options)
"""

from PIL import Image

from medr1_demo.protocol import (
    LETTERS,
    MODES,
    NO_THINKING,
    THINKING,
    Question,
    rationale_conclusion,
)
from medr1_demo.results import Check

IMAGE, ORDER = "image", "order"
CONTROLS = (IMAGE, ORDER)
CONTROL_LABELS = {IMAGE: "without the image", ORDER: "options reordered"}
# Below this total variation distance (and with the same answer) an answer is reported as not
# depending on the image: 0.1 means at most 10% of the probability moved between options.
IMAGE_TV_THRESHOLD = 0.1
GREY = (128, 128, 128)


def grey_image(image: Image.Image) -> Image.Image:
    """A featureless mid-grey picture of the same size: the scan with nothing in it."""
    return Image.new("RGB", image.size, GREY)


def rotated(question: Question) -> tuple[Question, dict[str, str]]:
    """The question with its options rotated by one (B's text becomes A, ..., A's text last).

    Returns the new question and the map from its letters back to the original letters.
    """
    n = len(question.options)
    order = list(range(1, n)) + [0]  # new position i shows original option order[i]
    moved = Question(question.text, tuple(question.options[i] for i in order))
    back = {LETTERS[i]: LETTERS[original] for i, original in enumerate(order)}
    return moved, back


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """Half the summed absolute difference of two distributions over the same letters."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def _named(letter: str | None, options) -> str:
    if letter is None:
        return "no valid answer"
    return f"{letter}) {options[LETTERS.index(letter)]}"


def image_check(letter, probabilities, grey_letter, grey_probabilities, options) -> Check:
    """The image-reliance verdict from the real answer and the grey-picture answer."""
    distance = None
    if probabilities is not None and grey_probabilities is not None:
        distance = round(total_variation(probabilities, grey_probabilities), 4)
    base = {"name": IMAGE, "letter": grey_letter, "probabilities": grey_probabilities}
    if letter is None or grey_letter is None:
        sentence = "Cannot be judged: one of the two answers has no valid letter."
        return Check(verdict="unknown", sentence=sentence, distance=distance, **base)
    same = letter == grey_letter
    if same and distance is not None and distance < IMAGE_TV_THRESHOLD:
        sentence = (
            f"This answer does not depend on the image: with a blank grey picture the model "
            f"gives the same answer with almost the same probabilities (distance {distance:.2f})."
        )
        return Check(verdict="ignores image", sentence=sentence, distance=distance, **base)
    if same:
        moved = "" if distance is None else f" but the probabilities move (distance {distance:.2f})"
        sentence = f"Without the image the answer is the same{moved}."
        verdict = "same answer" if distance is None else "uses image"
        return Check(verdict=verdict, sentence=sentence, distance=distance, **base)
    sentence = (
        f"The answer depends on the image: without it the model answers "
        f"{_named(grey_letter, options)} instead."
    )
    return Check(verdict="uses image", sentence=sentence, distance=distance, **base)


def order_check(letter, moved_letter, back: dict[str, str], moved_probabilities, options) -> Check:
    """The option-order verdict; `moved_letter` is the answer to the rotated question."""
    mapped = back.get(moved_letter) if moved_letter else None
    probabilities = None
    if moved_probabilities is not None:  # re-keyed by the original letters
        probabilities = {back[k]: v for k, v in moved_probabilities.items() if k in back}
        probabilities = {k: probabilities[k] for k in sorted(probabilities)}
    base = {"name": ORDER, "letter": mapped, "probabilities": probabilities}
    if letter is None or mapped is None:
        sentence = "Cannot be judged: one of the two answers has no valid letter."
        return Check(verdict="unknown", sentence=sentence, **base)
    if mapped == letter:
        sentence = f"With the options reordered the model still chooses {_named(letter, options)}."
        return Check(verdict="holds", sentence=sentence, **base)
    if moved_letter == letter:
        sentence = (
            f"The answer follows the position, not the option: with the options reordered the "
            f"model again answers {letter}), which is now {_named(mapped, options)}."
        )
        return Check(verdict="follows position", sentence=sentence, **base)
    sentence = (
        f"With the options reordered the model chooses {_named(mapped, options)} instead of "
        f"{_named(letter, options)}."
    )
    return Check(verdict="changes", sentence=sentence, **base)


def rationale_check(rationale: str | None, letter: str | None, options) -> Check | None:
    """Whether the thinking rationale concludes with the option that was answered."""
    if not rationale:
        return None
    pointed = rationale_conclusion(rationale, list(options))
    base = {"name": "rationale", "letter": LETTERS[pointed] if pointed is not None else None}
    if pointed is None:
        sentence = "The reasoning does not end by naming an option, so it cannot be compared."
        return Check(verdict="no conclusion", sentence=sentence, **base)
    if letter is not None and LETTERS[pointed] == letter:
        sentence = f"The reasoning and the answer agree on {_named(letter, options)}."
        return Check(verdict="consistent", sentence=sentence, **base)
    sentence = (
        f"The reasoning points to {_named(LETTERS[pointed], options)}; the answer is "
        f"{_named(letter, options)}."
    )
    return Check(verdict="contradicts", sentence=sentence, **base)


# Defaults: both controls for no-thinking (a few tokens each); none for thinking, whose
# controls would cost a whole second rationale each.
DEFAULT_CHECKS = {THINKING: (), NO_THINKING: CONTROLS}


def read_checks(checks) -> dict[str, tuple[str, ...]]:
    """Checks per mode from None (the defaults), a mode -> names mapping, or "mode:name" strings.

    Raises ValueError naming what is unknown.
    """
    if checks is None:
        return dict(DEFAULT_CHECKS)
    if isinstance(checks, dict):
        pairs = [(mode, name) for mode, names in checks.items() for name in names]
    else:
        pairs = []
        for item in checks:
            mode, _, name = str(item).rpartition(":")
            pairs.append((mode, name))
    chosen: dict[str, tuple[str, ...]] = {mode: () for mode in MODES}
    for mode, name in pairs:
        if mode not in MODES or name not in CONTROLS:
            listed = ", ".join(f"{m}:{c}" for m in MODES for c in CONTROLS)
            raise ValueError(f"Unknown check '{mode}:{name}'; choose from {listed}.")
        if name not in chosen[mode]:
            chosen[mode] += (name,)
    return chosen
