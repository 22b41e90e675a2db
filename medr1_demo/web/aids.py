"""How the trust aids are shown: option-probability bars and the checks' verdicts, HTML and JSON.

Pure functions of `ModeAnswer` (no Gradio, no torch). Each aid says in its own words what it
measures; the legend under the cards (`AIDS_LEGEND`) says what none of them measures.

    html = aids.probability_bars(answer, options) + aids.checks_html(answer)
    payload = aids.checks_payload(answer, options)
"""

import html

from medr1_demo.protocol import LETTERS, NO_THINKING, THINKING
from medr1_demo.results import ModeAnswer

CHECK_CHOICES = [
    ("No thinking: without the image", f"{NO_THINKING}:image"),
    ("No thinking: options reordered", f"{NO_THINKING}:order"),
    ("Thinking: without the image (a second rationale)", f"{THINKING}:image"),
    ("Thinking: options reordered (a second rationale)", f"{THINKING}:order"),
]
DEFAULT_CHECKS = [f"{NO_THINKING}:image", f"{NO_THINKING}:order"]
CHECK_TITLES = {
    "image": "Without the image",
    "order": "Options reordered",
    "rationale": "Reasoning vs answer",
    "controls": "Checks",
}
# Verdicts worth a second look are shown as warnings; the rest as information.
WARNING_VERDICTS = {"ignores image", "follows position", "changes", "contradicts", "failed"}
AIDS_LEGEND = (
    "Bars: the probability the model gave each option where it wrote its answer (its own "
    "confidence, not a clinical certainty). Without the image: the same question with a blank "
    "grey picture; an answer that stays put did not use the scan. Options reordered: the options "
    "rotated by one place; an answer that keeps its letter followed the position, not the option. "
    "None of these says whether an answer is right."
)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def probability_bars(answer: ModeAnswer | None, options) -> str:
    """One bar per option, the chosen one marked; or why there are none."""
    if answer is None or not answer.done:
        return ""
    if answer.probabilities is None:
        note = answer.probability_note or "No probabilities for this answer."
        return f'<p class="medr1-muted medr1-probs-none">{_e(note)}</p>'
    rows = []
    for letter, probability in answer.probabilities.items():
        chosen = letter == answer.letter
        text = options[LETTERS.index(letter)] if LETTERS.index(letter) < len(options) else ""
        width = max(0.0, min(100.0, 100 * probability))
        rows.append(
            f'<div class="medr1-prob{" medr1-chosen" if chosen else ""}" '
            f'title="{_e(letter)}) {_e(text)}: {width:.1f}%">'
            f'<span class="medr1-prob-label">{_e(letter)}) {_e(text)}</span>'
            f'<span class="medr1-prob-track"><span class="medr1-prob-bar" '
            f'style="width:{width:.1f}%"></span></span>'
            f'<span class="medr1-prob-value">{width:.0f}%</span></div>'
        )
    mass = ""
    if answer.letter_mass is not None and answer.letter_mass < 0.9:
        mass = (
            f'<p class="medr1-muted">Only {100 * answer.letter_mass:.0f}% of the model\'s '
            "probability went to the option letters here.</p>"
        )
    return f'<div class="medr1-probs" aria-label="option probabilities">{"".join(rows)}{mass}</div>'


def checks_html(answer: ModeAnswer | None) -> str:
    """Each check's verdict in plain words."""
    if answer is None or not answer.done or not answer.checks:
        return ""
    items = []
    for name, check in answer.checks.items():
        tone = "medr1-check-warn" if check.verdict in WARNING_VERDICTS else "medr1-check-ok"
        title = CHECK_TITLES.get(name, name)
        items.append(
            f'<li class="medr1-check {tone}" data-check="{_e(name)}" '
            f'data-verdict="{_e(check.verdict)}"><strong>{_e(title)}:</strong> '
            f"{_e(check.sentence)}</li>"
        )
    return f'<ul class="medr1-checks">{"".join(items)}</ul>'


def aids_html(answer: ModeAnswer | None, options) -> str:
    """The bars and the checks of one answer card."""
    return probability_bars(answer, options) + checks_html(answer)


def checks_payload(answer: ModeAnswer, options) -> dict:
    """The checks of one answer for the API: verdict, sentence, the control's answer."""
    payload = {}
    for name, check in answer.checks.items():
        letter = check.letter
        payload[name] = {
            "verdict": check.verdict,
            "sentence": check.sentence,
            "letter": letter,
            "option_text": options[LETTERS.index(letter)] if letter else None,
            "probabilities": check.probabilities,
            "distance": check.distance,
        }
    return payload


def chosen_checks(value) -> list[str]:
    """The page's check boxes (or the API's list) as "mode:check" strings; None: the defaults."""
    if value is None:
        return list(DEFAULT_CHECKS)
    return [str(v) for v in value]
