"""What the policy engine returns: each mode's answer, and what was loaded to give it; no torch.

The engine returns these, the page renders them (`medr1_demo.web.render`), the API sends them as
JSON. Keeping them torch-free keeps the page torch-free.
"""

from dataclasses import dataclass, field

from medr1_demo.protocol import MODES


class Busy(RuntimeError):
    """The policy's wait queue is full; str(err) is the sentence to show."""


@dataclass(frozen=True)
class Check:
    """One trust aid's outcome for one mode's answer (see `medr1_demo.policy.trust`)."""

    name: str  # "image", "order" or "rationale"
    verdict: str  # e.g. "ignores image", "uses image", "holds", "follows position", "failed"
    sentence: str  # what it means, in plain words
    letter: str | None = None  # the control's answer, in the question's original letters
    probabilities: dict[str, float] | None = None  # the control's option probabilities
    distance: float | None = None  # total variation to the real answer's probabilities (image)


@dataclass(frozen=True)
class RelevanceMap:
    """Where in the picture one mode's answer letter came from (`medr1_demo.policy.relevance`).

    `grid` holds one share per merged visual token, rows x columns over the picture the policy
    saw (top row first), summing to 1; None with `problem` saying why in plain words.
    """

    grid: tuple[tuple[float, ...], ...] | None
    letter: str | None  # the answer letter the map explains
    method: str  # e.g. "gradient x input"
    problem: str | None = None  # why there is no map, in plain words
    seconds: float = 0.0  # what computing it cost

    @property
    def peak(self) -> tuple[int, int] | None:
        """(row, column) of the cell with the most relevance (the first of ties)."""
        if not self.grid:
            return None
        cells = [(v, r, c) for r, row in enumerate(self.grid) for c, v in enumerate(row)]
        _, row, column = max(cells, key=lambda cell: (cell[0], -cell[1], -cell[2]))
        return row, column


@dataclass(frozen=True)
class ModeAnswer:
    """One mode's answer to one question. While streaming, `done` is False and fields grow."""

    mode: str
    raw: str  # the completion as generated
    rationale: str | None  # text inside <think> (thinking mode)
    letter: str | None  # the answer letter, None when the output holds no valid answer
    option_text: str | None  # the option the letter names
    format_ok: bool  # kept Med-R1's format for this mode
    problem: str | None  # why there is no valid answer, in plain words
    tokens: int  # tokens generated so far
    seconds: float  # wall time since generation started
    done: bool = True
    # The probability of each option letter where the answer was written, summing to 1; None
    # with `probability_note` saying why (no <answer> tag, ...). `letter_mass`: the share of the
    # model's whole distribution that fell on the option letters there.
    probabilities: dict[str, float] | None = None
    probability_note: str | None = None
    letter_mass: float | None = None
    checks: dict[str, Check] = field(default_factory=dict)  # name -> outcome, once done
    relevance: RelevanceMap | None = None  # where it looked, when maps were asked for


@dataclass(frozen=True)
class ModelInfo:
    """What the engine loaded, for the UI's model panel and the evaluator's reports."""

    model_id: str  # local path or hub repo id
    subfolder: str | None
    adapter: str | None
    base_model: str | None  # from the checkpoint's metadata or the adapter's config
    trained_mode: str | None  # "thinking" / "no-thinking" when the checkpoint's metadata says
    description: str | None  # e.g. "demo policy trained on synthetic phantoms"
    device: str
    dtype: str
    parameters: int
    processor: str  # "stock" or "image-only" (no torchvision)
    image_size: int | None = None  # the square side it sees pictures at; None: as uploaded


def modes_agree(answers: dict[str, ModeAnswer]) -> bool | None:
    """True/False when both modes gave a valid letter, None when that cannot be judged."""
    letters = [answers[m].letter for m in MODES if m in answers]
    if len(letters) < 2 or None in letters:
        return None
    return letters[0] == letters[1]
