"""One question in several modes, with its trust-aid controls: the rows to generate, and the answers.

`plan` turns a question into rows: one per mode (the real answers), then one per control asked
(`medr1_demo.policy.trust`: the scan replaced by grey, the options rotated), all generated in the
same batch. `partial_answers` reads growing rows while they stream; `final_answers` reads the
finished rows into `ModeAnswer`s with their option probabilities (`policy.letters`) and checks.

    plan = asking.plan(image, question, modes, settings, checks={"no-thinking": ("image", "order")})
    for update in engine.generate_rows(plan.rows, settings): ...
    answers = asking.final_answers(engine, plan, update)

Checks are chosen per mode: `trust.read_checks(None)` gives the defaults (both controls for no-thinking,
none for thinking, whose controls would cost a whole rationale each).
"""

from dataclasses import dataclass, replace

from PIL import Image

from medr1_demo.config import DecodingConfig
from medr1_demo.policy import trust
from medr1_demo.policy.generation import Row
from medr1_demo.policy.letters import option_probabilities
from medr1_demo.protocol import (
    LETTERS,
    MODES,
    THINKING,
    Question,
    build_prompt,
    parse_output,
)
from medr1_demo.results import Check, ModeAnswer


@dataclass(frozen=True)
class Control:
    mode: str
    name: str  # trust.IMAGE or trust.ORDER
    row: int  # its row in the plan
    back: dict[str, str] | None = None  # ORDER: the rotated question's letters -> original


@dataclass(frozen=True)
class Plan:
    question: Question
    modes: tuple[str, ...]
    rows: list[Row]  # the modes' rows first, in `modes` order, then the controls'
    controls: tuple[Control, ...]

    def main_only(self) -> "Plan":
        """The same plan without its controls (when a control made the batch fail)."""
        return replace(self, rows=self.rows[: len(self.modes)], controls=())


def plan(
    image: Image.Image,
    question: Question,
    modes,
    settings: DecodingConfig,
    checks=None,
) -> Plan:
    """The rows for `question` in `modes` plus the chosen checks' controls."""
    modes = tuple(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {MODES}, not {modes!r}")
    chosen = trust.read_checks(checks)
    rows = [Row(image, build_prompt(question.formatted, m), settings.tokens_for(m)) for m in modes]
    controls = []
    for mode in modes:
        for name in chosen.get(mode, ()):
            if name == trust.IMAGE:
                prompt = rows[modes.index(mode)].prompt
                row = Row(trust.grey_image(image), prompt, settings.tokens_for(mode))
                controls.append(Control(mode, name, len(rows)))
            else:
                moved, back = trust.rotated(question)
                row = Row(image, build_prompt(moved.formatted, mode), settings.tokens_for(mode))
                controls.append(Control(mode, name, len(rows), back))
            rows.append(row)
    return Plan(question, modes, rows, tuple(controls))


def _answer(engine, mode, tokens, seconds, options, done, steps=None) -> ModeAnswer:
    """One mode's answer from its row; probabilities when the row's recorded steps are given."""
    kept = engine.until_stop(tokens, len(tokens))
    text = engine.decode(kept)
    if not done:  # a partial multi-byte character decodes to U+FFFD; it completes later
        text = text.rstrip("\ufffd")
    parsed = parse_output(text, mode, n_options=len(options))
    index = LETTERS.index(parsed.letter) if parsed.letter else None
    extra = {}
    if steps is not None:
        found = option_probabilities(kept, steps, engine.letter_forms, len(options), engine.decode)
        probabilities = found.probabilities
        if probabilities is not None:
            probabilities = {k: round(v, 4) for k, v in probabilities.items()}
        extra = {
            "probabilities": probabilities,
            "probability_note": found.problem,
            "letter_mass": None if found.mass is None else round(found.mass, 4),
        }
    return ModeAnswer(
        mode=mode,
        raw=text,
        rationale=parsed.rationale,
        letter=parsed.letter,
        option_text=options[index] if index is not None else None,
        format_ok=parsed.format_ok,
        problem=parsed.problem,
        tokens=len(kept),
        seconds=round(seconds, 3),
        done=done,
        **extra,
    )


def partial_answers(engine, plan: Plan, update, now: float) -> dict[str, ModeAnswer]:
    """The modes' answers so far from a streaming update (`now`: seconds since the start)."""
    answers = {}
    for row, mode in enumerate(plan.modes):
        done = update.finished[row] is not None
        seconds = update.finished[row] if done else now
        answers[mode] = _answer(
            engine, mode, update.tokens[row], seconds, plan.question.options, done
        )
    return answers


def final_answers(engine, plan: Plan, update, failed: dict | None = None) -> dict[str, ModeAnswer]:
    """The finished answers with probabilities and checks.

    `failed` (mode -> sentence) marks the modes whose controls were dropped because they failed.
    """
    options = plan.question.options
    steps = update.steps or [[] for _ in plan.rows]
    answers = {}
    for row, mode in enumerate(plan.modes):
        answer = _answer(engine, mode, update.tokens[row], update.finished[row] or 0.0,
                         options, True, steps[row])  # fmt: skip
        checks = {}
        if failed and mode in failed:
            checks = {"controls": Check("controls", "failed", failed[mode])}
        for control in plan.controls:
            if control.mode != mode:
                continue
            try:
                checks[control.name] = _control_check(engine, plan, answer, control, update, steps)
            except Exception as error:  # a broken check never costs the answer
                sentence = f"This check could not be run ({type(error).__name__})."
                checks[control.name] = Check(control.name, "failed", sentence)
        if mode == THINKING:
            consistency = trust.rationale_check(answer.rationale, answer.letter, options)
            if consistency is not None:
                checks["rationale"] = consistency
        answers[mode] = replace(answer, checks=checks)
    return answers


def _control_check(engine, plan: Plan, answer: ModeAnswer, control: Control, update, steps):
    """The check of one control row against the mode's real answer."""
    options = plan.question.options  # the rotated question has as many options, in other places
    seen = _answer(engine, control.mode, update.tokens[control.row], 0.0, options, True,
                   steps[control.row])  # fmt: skip
    if control.name == trust.IMAGE:
        return trust.image_check(
            answer.letter, answer.probabilities, seen.letter, seen.probabilities, options
        )
    return trust.order_check(answer.letter, seen.letter, control.back, seen.probabilities, options)
