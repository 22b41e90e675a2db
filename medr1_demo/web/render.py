"""How answers, scans and the model are shown: HTML for the page, plain dicts for the API.

Pure functions of the engine's dataclasses; no Gradio and no torch, so they are tested directly.
Everything the model or a person wrote is HTML-escaped before it reaches the page.
"""

import html

from medr1_demo import overlay
from medr1_demo.protocol import LETTERS, MODES, NO_THINKING, THINKING, Question
from medr1_demo.results import ModeAnswer, ModelInfo, RelevanceMap, modes_agree
from medr1_demo.web import aids

MODE_LABELS = {THINKING: "Thinking", NO_THINKING: "No thinking"}
PREVIEW_MAX_SIDE = 1024  # pixels; larger scans are shown scaled down
DISCLAIMER = (
    "Research demo. Not a medical device and not for clinical decisions: answers may be wrong "
    "and must not guide diagnosis or treatment."
)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def message_html(text: str | None, kind: str = "error") -> str:
    """A boxed message (kind: error, warning, info); empty string when there is nothing to say."""
    if not text:
        return ""
    return f'<div class="medr1-msg medr1-msg-{kind}" role="status">{_e(text)}</div>'


def messages_html(texts, kind: str = "warning") -> str:
    return "".join(message_html(text, kind) for text in texts if text)


# ------------------------------------------------------------------------------------- answers


def _chip(text: str, tone: str = "") -> str:
    return f'<span class="medr1-chip {tone}">{_e(text)}</span>'


def answer_card(mode: str, answer: ModeAnswer | None, requested: bool = True, options=()) -> str:
    """The big answer of one mode: letter + option text, format kept or not, tokens and seconds,
    and once done the option probabilities and the checks (`options`: the question's)."""
    title = f'<div class="medr1-card-title">{_e(MODE_LABELS[mode])}</div>'
    if not requested:
        return f'<div class="medr1-card medr1-idle">{title}<p>Not requested.</p></div>'
    if answer is None:
        return f'<div class="medr1-card medr1-idle">{title}<p>Waiting for a question.</p></div>'
    if answer.letter:
        option = f'<span class="medr1-option">{_e(answer.option_text or "")}</span>'
        body = f'<div class="medr1-answer"><span class="medr1-letter">{answer.letter}</span>{option}</div>'
        state = "medr1-ok"
    elif not answer.done:
        body = '<div class="medr1-answer medr1-pending-answer">…</div>'
        state = "medr1-pending"
    else:
        body = '<div class="medr1-answer medr1-none">No valid answer</div>'
        state = "medr1-problem"
    if not answer.done:
        state += " medr1-running"
    problem = ""
    if answer.done and answer.problem:
        problem = f'<p class="medr1-problem">{_e(answer.problem)}</p>'
    chips = []
    if answer.done:
        kept = "format kept" if answer.format_ok else "format not kept"
        chips.append(_chip(kept, "medr1-good" if answer.format_ok else "medr1-bad"))
    else:
        chips.append(_chip("generating", "medr1-busy"))
    chips.append(_chip(f"{answer.tokens} tokens"))
    chips.append(_chip(f"{answer.seconds:.1f} s"))
    facts = f'<div class="medr1-facts">{"".join(chips)}</div>'
    trust = aids.aids_html(answer, options)
    return f'<div class="medr1-card {state}">{title}{body}{problem}{facts}{trust}</div>'


def rationale_html(answer: ModeAnswer | None) -> str:
    """The thinking-mode rationale as escaped paragraphs."""
    if answer is None:
        return '<p class="medr1-muted">The reasoning appears here.</p>'
    if not answer.rationale:
        text = "No reasoning yet." if not answer.done else "The output holds no <think> reasoning."
        return f'<p class="medr1-muted">{_e(text)}</p>'
    paragraphs = [p.strip() for p in answer.rationale.split("\n") if p.strip()]
    return (
        '<div class="medr1-rationale">' + "".join(f"<p>{_e(p)}</p>" for p in paragraphs) + "</div>"
    )


def raw_output_html(answer: ModeAnswer | None) -> str:
    if answer is None or not answer.raw:
        return '<p class="medr1-muted">Nothing generated yet.</p>'
    return f'<pre class="medr1-raw">{_e(answer.raw)}</pre>'


def agreement_html(answers: dict[str, ModeAnswer] | None) -> str:
    """Whether the two modes name the same option, once both are done."""
    if not answers or not all(m in answers for m in MODES):
        return (
            '<div class="medr1-agree medr1-idle">Agreement is shown when both modes answer.</div>'
        )
    if not all(answers[m].done for m in MODES):
        return '<div class="medr1-agree medr1-idle">Both modes are answering…</div>'
    agree = modes_agree(answers)
    if agree is None:
        text, tone = "Agreement cannot be judged: a mode gave no valid answer.", "medr1-idle"
    elif agree:
        letter = answers[THINKING].letter
        text, tone = f"Both modes agree: {letter}) {answers[THINKING].option_text}", "medr1-yes"
    else:
        a, b = answers[THINKING], answers[NO_THINKING]
        text = f"The modes disagree: thinking {a.letter}), no thinking {b.letter})"
        tone = "medr1-no"
    return f'<div class="medr1-agree {tone}">{_e(text)}</div>'


# -------------------------------------------------------------------------------- relevance

MAPS_LEGEND = (
    "Where each mode looked: how much each patch of the picture moved the letter it chose "
    "(gradient x input on the visual tokens); brighter is more, the white frame the most. It is "
    "the model's view, not a finding: a bright patch is where the answer was sensitive, not proof "
    "that anything is there."
)
_CORNERS = ("upper", "middle", "lower"), ("left", "centre", "right")


def where_words(relevance: RelevanceMap) -> str:
    """The peak's place in plain words, e.g. 'upper left'."""
    rows, columns = len(relevance.grid), len(relevance.grid[0])
    row, column = relevance.peak
    vertical = _CORNERS[0][min(2, 3 * row // rows)]
    horizontal = _CORNERS[1][min(2, 3 * column // columns)]
    return (
        "centre" if (vertical, horizontal) == ("middle", "centre") else f"{vertical} {horizontal}"
    )


def relevance_html(answers: dict[str, ModeAnswer] | None, picture, asked: bool = True) -> str:
    """Each mode's relevance map over the picture it saw, side by side; or why there is none."""
    if not asked or not answers:
        return ""
    if not all(a.done for a in answers.values()):
        return ""
    if all(a.relevance is None for a in answers.values()):
        text = "Computing where each mode looked…"
        return f'<div class="medr1-maps medr1-idle">{_e(text)}</div>'
    figures = []
    for mode in MODES:
        answer = answers.get(mode)
        if answer is None or answer.relevance is None:
            continue
        found = answer.relevance
        title = f"{MODE_LABELS[mode]}: {found.letter or answer.letter or 'no answer'}"
        if found.grid is None or picture is None:
            body = f'<p class="medr1-muted">{_e(found.problem or "No map.")}</p>'
        else:
            url = overlay.data_url(overlay.heat_overlay(picture, found.grid))
            alt = f"Relevance map of the {MODE_LABELS[mode].lower()} answer"
            caption = f"Most relevance: {where_words(found)} ({found.seconds:.2f} s)"
            body = f'<img src="{url}" alt="{_e(alt)}" /><figcaption>{_e(caption)}</figcaption>'
        figures.append(
            f'<figure class="medr1-map" data-mode="{_e(mode)}">'
            f'<div class="medr1-card-title">{_e(title)}</div>{body}</figure>'
        )
    return (
        f'<div class="medr1-maps"><div class="medr1-map-row">{"".join(figures)}</div>'
        f'<p class="medr1-legend">{_e(MAPS_LEGEND)}</p></div>'
    )


def relevance_payload(relevance: RelevanceMap | None) -> dict | None:
    """A map for the API: the grid of shares (rows x columns, top row first), its peak, or why
    there is none."""
    if relevance is None:
        return None
    grid = [list(row) for row in relevance.grid] if relevance.grid else None
    return {
        "grid": grid,
        "rows": len(grid) if grid else None,
        "columns": len(grid[0]) if grid else None,
        "peak": list(relevance.peak) if relevance.grid else None,
        "letter": relevance.letter,
        "method": relevance.method,
        "problem": relevance.problem,
        "seconds": relevance.seconds,
    }


# ---------------------------------------------------------------------------------------- scan


def preview_html(image) -> str:
    """The exact picture the model sees, inlined as a data URL so no derived file is written."""
    if image is None:
        return (
            '<div class="medr1-preview medr1-empty">Upload a scan to see what the model sees.</div>'
        )
    width, height = image.size
    shown = image
    if max(width, height) > PREVIEW_MAX_SIDE:  # display size only; the caption gives the real one
        shown = image.copy()
        shown.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    if shown.mode == "RGB":
        red, green, blue = shown.split()
        if red.tobytes() == green.tobytes() == blue.tobytes():  # grey scans: a third of the bytes
            shown = red
    caption = f"Model input: {width} × {height} px, RGB"
    return (
        '<figure class="medr1-preview">'
        f'<img src="{overlay.data_url(shown)}" alt="Scan as the model sees it" />'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def metadata_table(metadata: dict[str, str] | None) -> str:
    """The scan's safe metadata (already filtered by the imaging module) as a two-column table."""
    if not metadata:
        return ""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in metadata.items())
    return f'<table class="medr1-meta"><tbody>{rows}</tbody></table>'


def question_preview(question: Question | None) -> str:
    """What the model is asked, OmniMedVQA style, or nothing."""
    if question is None:
        return ""
    return f'<div class="medr1-asked"><span>Asked as</span> {_e(question.formatted)}</div>'


# --------------------------------------------------------------------------------------- model


def model_panel(
    info: ModelInfo,
    notice: str | None = None,
    serving: str | None = None,
    policy: str | None = None,
    why: str | None = None,
) -> str:
    """Checkpoint, base model, trained mode, device... and the disclaimer."""
    rows = [("Policy", policy)] if policy else []
    if why:
        rows.append(("Why this policy", why))
    rows += [
        ("Checkpoint", info.model_id),
        ("Sub-folder", info.subfolder or "—"),
        ("Adapter", info.adapter or "—"),
        ("Base model", info.base_model or "unknown"),
        ("Trained mode", info.trained_mode or "unknown"),
        ("Description", info.description or "—"),
        ("Device", info.device),
        ("Precision", info.dtype),
        (
            "Parameters",
            f"{info.parameters / 1e6:,.1f} M" if info.parameters >= 1e5 else f"{info.parameters:,}",
        ),
        ("Processor", info.processor),
        # The app asks with what GRPO trained on; `trainer eval --prompts medr1-eval` does not.
        ("Prompts", "Med-R1's training prompts (what the policy learned), not its eval prompts"),
        ("Serving", serving or "one request at a time"),
    ]
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    banner = message_html(notice, "warning") if notice else ""
    return f'{banner}<table class="medr1-meta medr1-model"><tbody>{table}</tbody></table>'


def disclaimer_html() -> str:
    return f'<div class="medr1-disclaimer"><strong>Not for clinical use.</strong> {_e(DISCLAIMER)}</div>'


# ----------------------------------------------------------------------------------------- API


def mode_payload(answer: ModeAnswer, options=()) -> dict:
    return {
        "letter": answer.letter,
        "option_text": answer.option_text,
        "rationale": answer.rationale,
        "format_ok": answer.format_ok,
        "tokens": answer.tokens,
        "seconds": round(answer.seconds, 3),
        "problem": answer.problem,
        "raw": answer.raw,
        "done": answer.done,
        "probabilities": answer.probabilities,
        "probability_note": answer.probability_note,
        "letter_mass": answer.letter_mass,
        "checks": aids.checks_payload(answer, options),
        "relevance": relevance_payload(answer.relevance),
    }


def model_payload(info: ModelInfo) -> dict:
    return {
        "model_id": info.model_id,
        "subfolder": info.subfolder,
        "adapter": info.adapter,
        "base_model": info.base_model,
        "trained_mode": info.trained_mode,
        "description": info.description,
        "device": info.device,
        "dtype": info.dtype,
        "parameters": info.parameters,
    }


def api_payload(
    info: ModelInfo,
    *,
    answers: dict[str, ModeAnswer] | None = None,
    scan: dict | None = None,
    question: Question | None = None,
    error: str | None = None,
    policy: str | None = None,
    why: str | None = None,
    compare: dict | None = None,
) -> dict:
    """The JSON an API client receives: answers per mode, agreement, scan facts, model, error."""
    answers = answers or {}
    options = question.options if question else ()
    done = bool(answers) and all(a.done for a in answers.values())
    return {
        "ok": error is None,
        "error": error,
        "done": error is not None or done,
        "question": question.text if question else None,
        "options": {LETTERS[i]: o for i, o in enumerate(question.options)} if question else None,
        "answers": {mode: mode_payload(a, options) for mode, a in answers.items()},
        "agree": modes_agree(answers) if done else None,
        "scan": scan,
        "model": model_payload(info),
        "policy": {"name": policy, "why": why} if policy else None,
        "compare": compare,
        "policies_agree": policies_agree(answers, compare),
    }


def policies_agree(answers: dict[str, ModeAnswer], compare: dict | None) -> dict | None:
    """Per mode: whether the two policies gave the same letter (None: not both valid)."""
    if not compare or not compare.get("answers"):
        return None
    found = {}
    for mode, answer in answers.items():
        other = compare["answers"].get(mode, {}).get("letter")
        found[mode] = None if not answer.letter or not other else answer.letter == other
    return found


def comparison_html(name: str | None, first: dict, second: dict | None, options=()) -> str:
    """The second policy's answers beside the first's, and where the two agree."""
    if not name:
        return ""
    cards = "".join(
        answer_card(mode, (second or {}).get(mode), mode in (first or {}), options)
        for mode in MODES
    )
    verdicts = []
    for mode in MODES:
        a, b = (first or {}).get(mode), (second or {}).get(mode)
        if a is None or b is None or not a.done or not b.done:
            continue
        if not a.letter or not b.letter:
            text, tone = f"{MODE_LABELS[mode]}: cannot be compared (no valid answer).", "medr1-idle"
        elif a.letter == b.letter:
            text, tone = (
                f"{MODE_LABELS[mode]}: both policies answer {a.letter}) {a.option_text}.",
                "medr1-yes",
            )
        else:
            text = (
                f"{MODE_LABELS[mode]}: the policies differ ({a.letter}) here, {b.letter}) there)."
            )
            tone = "medr1-no"
        verdicts.append(f'<div class="medr1-agree {tone}">{_e(text)}</div>')
    return (
        f'<div class="medr1-compare"><h3 class="medr1-h3">Compared with {_e(name)}</h3>'
        f'<div class="medr1-compare-cards">{cards}</div>{"".join(verdicts)}</div>'
    )
