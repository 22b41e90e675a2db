"""The Med-R1 protocol in one place: question strings, prompt templates, messages, answer parsing.

The app, the trainer's dataset rows, the rewards and the evaluator all use these functions, so the
app asks exactly what training taught. Facts come from the official repository
(Yuxiang-Lai117/Med-R1 @ 88d76c7); see docs in DESIGN.md.

Three prompt sets (`PROMPT_SETS`), each verbatim from one part of that repository:

- "training" (`PROMPT_TEMPLATES`): what GRPO trained on; the app and the trainer always ask these.
- "medr1-eval": what Med-R1's evaluation scripts asked (`src/eval_vqa/test_qwen2vl_vqa.py`,
  `test_qwen2vl_vqa_nothink.py`); `python -m trainer eval --prompts medr1-eval` asks these to
  compare with published numbers.
- "zero-shot": the one prompt of `test_qwen2vl_vqa_zero_shot.py` (the base model's baseline); it
  asks for the letter alone, so it has only a no-thinking variant, read by `parse_bare_answer`.

Med-R1's SFT baseline asked differently again: a system prompt, then the question text before the
image (`sft_messages`).

Two readings of a completion live here on purpose:

- `medr1_answer_text` keeps Med-R1's reward semantics exactly (the text inside the first
  `<answer>...</answer>`, or the whole completion when there is no tag). The trainer's rewards use it.
- `parse_output` is what a person is shown: tolerant where a reader would be (case, whitespace,
  `<answer>C) CT</answer>`), and it says why when there is no valid answer.

    >>> format_question("Which modality?", ["CT", "MRI"])
    'Which modality? A)CT, B)MRI'
    >>> parse_output("<answer> b </answer>", NO_THINKING, n_options=2).letter
    'B'
"""

import re
from dataclasses import dataclass

THINKING = "thinking"
NO_THINKING = "no-thinking"
MODES = (THINKING, NO_THINKING)

# The 8 modalities and 5 question types Med-R1 reports on (OmniMedVQA's names, normalised).
MODALITIES = (
    "CT", "MRI", "X-Ray", "Ultrasound", "Dermoscopy", "Fundus Photography", "OCT", "Microscopy",
)  # fmt: skip
QUESTION_TYPES = (
    "Modality Recognition", "Anatomy Identification", "Disease Diagnosis", "Lesion Grading",
    "Other Biological Attributes",
)  # fmt: skip

LETTERS = "ABCDEFGH"
MIN_OPTIONS, MAX_OPTIONS = 2, len(LETTERS)

# Verbatim from Med-R1's training code; {Question} is the question followed by its options.
PROMPT_TEMPLATES = {
    THINKING: (
        "{Question} Your task: 1. Think through the question step by step, enclose your reasoning "
        "process in <think>...</think> tags. 2. Then provide the correct single-letter choice "
        "(A, B, C, D,...) inside <answer>...</answer> tags. 3. No extra information or text "
        "outside of these tags."
    ),
    NO_THINKING: (
        "{Question} Your task: 1. Provide the correct single-letter choice (A, B, C, D,...) inside "
        "<answer>...</answer> tags. 2. No extra information or text outside of this tag."
    ),
}

# Verbatim from Med-R1's evaluation scripts (src/eval_vqa/test_qwen2vl_vqa.py:43,
# test_qwen2vl_vqa_nothink.py:44; the Qwen2.5-VL scripts use the same strings).
MEDR1_EVAL_TEMPLATES = {
    THINKING: (
        "{Question} Think through the question step by step in <think>...</think> tags. "
        "Then provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags."
    ),
    NO_THINKING: (
        "{Question} Provide the correct single-letter choice (A, B, C, D,...) inside "
        "<answer>...</answer> tags."
    ),
}
# Verbatim from src/eval_vqa/test_qwen2vl_vqa_zero_shot.py:43: no tags asked for, letter only.
ZERO_SHOT_TEMPLATES = {
    NO_THINKING: "{Question} Provide the correct single-letter choice (A, B, C, D,...).",
}
TRAINING_PROMPTS, MEDR1_EVAL_PROMPTS, ZERO_SHOT_PROMPTS = "training", "medr1-eval", "zero-shot"
PROMPT_SETS = {
    TRAINING_PROMPTS: PROMPT_TEMPLATES,
    MEDR1_EVAL_PROMPTS: MEDR1_EVAL_TEMPLATES,
    ZERO_SHOT_PROMPTS: ZERO_SHOT_TEMPLATES,
}

# Med-R1's SFT baseline (src/r1-v/src/open_r1/sft.py:119-121): this system prompt, then one user
# turn holding the bare `{Question}` text before the image; no task text in the user turn.
MEDR1_SFT_SYSTEM_PROMPT = (
    "Your task: Provide the correct single-letter choice (A, B, C, D,...) inside "
    "<answer>...</answer> tags."
)

# Med-R1's format rewards: the whole completion must match (DOTALL).
FORMAT_PATTERNS = {
    THINKING: re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL),
    NO_THINKING: re.compile(r"\s*<answer>.*?</answer>", re.DOTALL),
}

_FIRST_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# Med-R1's accuracy reward uses this pattern without DOTALL: an answer split over lines is not read.
_MEDR1_ANSWER = re.compile(r"<answer>(.*?)</answer>")
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
# Options as OmniMedVQA writes them: "A)text" separated by ", ". The look-ahead for the next letter
# in sequence keeps commas inside an option's text ("Adenocarcinoma, left lobe") intact.
_OPTION_START = re.compile(r"(?:^|\s)A\)")
# A reader's answer: a lone letter, "C)", "C) CT", "C. CT", "(C)", "Answer: C".
_LETTER_IN_ANSWER = re.compile(r"^\s*(?:answer\s*[:\-]?\s*)?\(?([A-Ha-h])(?:\)|\.|:|\s|$)", re.I)


class QuestionError(ValueError):
    """A question or its options cannot be asked; str(err) is a sentence for the person asking."""


def check_options(options: list[str]) -> list[str]:
    """Strip the options and check there are 2 to 8 non-empty ones; returns the stripped list."""
    cleaned = [option.strip() for option in options]
    if any(not option for option in cleaned):
        raise QuestionError("An answer option is empty; fill it in or remove it.")
    if not MIN_OPTIONS <= len(cleaned) <= MAX_OPTIONS:
        raise QuestionError(
            f"A question needs {MIN_OPTIONS} to {MAX_OPTIONS} answer options; got {len(cleaned)}."
        )
    return cleaned


@dataclass(frozen=True)
class Question:
    """A checked multiple-choice question: made once by `Question.ask`, then trusted as it is."""

    text: str  # the question, stripped
    options: tuple[str, ...]  # 2 to 8 stripped, non-empty options; option i has letter LETTERS[i]

    @classmethod
    def ask(cls, text: str, options: list[str]) -> "Question":
        """The question `text` with `options`; QuestionError says what to fix."""
        text = (text or "").strip()
        if not text:
            raise QuestionError("The question is empty; type a question about the scan.")
        return cls(text, tuple(check_options(list(options))))

    @property
    def formatted(self) -> str:
        """The OmniMedVQA-style `{Question}` string Med-R1 was trained on."""
        listed = ", ".join(f"{LETTERS[i]}){option}" for i, option in enumerate(self.options))
        return f"{self.text} {listed}"


def format_question(question: str, options: list[str]) -> str:
    """Question + options -> the OmniMedVQA-style `{Question}` string Med-R1 was trained on."""
    return Question.ask(question, options).formatted


def split_question(text: str) -> tuple[str, list[str]]:
    """The reverse of `format_question`: a pasted OmniMedVQA question -> (question, options).

    Raises QuestionError when the text holds no `A)... , B)...` option list.
    """
    text = text.strip()
    start = _OPTION_START.search(text)
    if start is None:
        raise QuestionError("No options found; write them as 'A)first, B)second, ...'.")
    question = text[: start.start()].strip()
    rest = text[start.end() :]
    options = []
    for letter in LETTERS[1:]:
        # The next option begins at ", X)" for the next letter in sequence.
        marker = re.search(rf",\s*{letter}\)", rest)
        if marker is None:
            break
        options.append(rest[: marker.start()])
        rest = rest[marker.end() :]
    options.append(rest)
    if not question:
        raise QuestionError("The text has options but no question before 'A)'.")
    return question, check_options(options)


def prompt_modes(prompts: str = TRAINING_PROMPTS) -> tuple[str, ...]:
    """The modes a prompt set can ask in (zero-shot: no-thinking only)."""
    if prompts not in PROMPT_SETS:
        raise ValueError(f"prompts must be one of {tuple(PROMPT_SETS)}, not {prompts!r}")
    return tuple(mode for mode in MODES if mode in PROMPT_SETS[prompts])


def build_prompt(question_text: str, mode: str, prompts: str = TRAINING_PROMPTS) -> str:
    """The text of the user turn for one mode, `question_text` being a `format_question` string.

    `prompts` picks the prompt set (default: the training templates, what the policy learned).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode not in prompt_modes(prompts):
        raise ValueError(f"the {prompts} prompts have no {mode} template")
    return PROMPT_SETS[prompts][mode].format(Question=question_text)


def user_turn(prompt: str) -> list[dict]:
    """One user turn holding the image first, then `prompt`; no system message (as Med-R1 trained)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def build_messages(question_text: str, mode: str) -> list[dict]:
    """The chat messages for one question in one mode."""
    return user_turn(build_prompt(question_text, mode))


def sft_messages(question_text: str) -> list[dict]:
    """Med-R1's SFT prompt: its system prompt, then the bare question text before the image."""
    return [
        {"role": "system", "content": [{"type": "text", "text": MEDR1_SFT_SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "text", "text": question_text}, {"type": "image"}]},
    ]


def solution_letter(solution: str) -> str:
    """The ground-truth letter of a Med-R1 `solution` such as `<answer> C </answer>`."""
    match = _MEDR1_ANSWER.search(solution)
    return (match.group(1) if match else solution).strip()


def make_solution(letter: str) -> str:
    """The Med-R1 `solution` string for a letter, spaced as in the released split files."""
    return f"<answer> {letter} </answer>"


def medr1_answer_text(completion: str) -> str:
    """Med-R1's accuracy-reward reading: first `<answer>` content stripped, else the whole text."""
    match = _MEDR1_ANSWER.search(completion)
    return (match.group(1) if match else completion).strip()


def has_mode_format(completion: str, mode: str) -> bool:
    """Med-R1's format reward test: the whole completion fully matches the mode's pattern."""
    return FORMAT_PATTERNS[mode].fullmatch(completion) is not None


@dataclass(frozen=True)
class ParsedAnswer:
    """What a person is shown of one completion."""

    letter: str | None  # "A".."H", or None when there is no valid answer
    rationale: str | None  # text inside <think>, thinking mode only
    format_ok: bool  # the completion kept the mode's Med-R1 format
    problem: str | None = None  # why there is no valid answer, in plain words


def parse_output(text: str, mode: str, n_options: int) -> ParsedAnswer:
    """Read a completion the way a reader would; says why when there is no valid answer."""
    think = _THINK.search(text)
    rationale = think.group(1).strip() if think and mode == THINKING else None
    format_ok = has_mode_format(text, mode)
    answer = _FIRST_ANSWER.search(text)
    if answer is None:
        problem = "The model gave no <answer> tag." if text.strip() else "The model gave no output."
        return ParsedAnswer(None, rationale or None, format_ok, problem)
    letter, problem = _option_letter(answer.group(1), n_options, "The answer tag holds")
    return ParsedAnswer(letter, rationale or None, format_ok, problem)


def parse_bare_answer(text: str, n_options: int) -> ParsedAnswer:
    """Read a reply to a prompt that asked for the letter alone (the zero-shot prompt).

    The letter inside `<answer>` when the reply has the tag, else the letter the reply starts with
    (`C`, `C) CT`, `(C)`, `Answer: C`); the format is kept when the reply is one letter alone.
    """
    stripped = text.strip()
    if not stripped:
        return ParsedAnswer(None, None, False, "The model gave no output.")
    format_ok = len(stripped) == 1 and stripped in LETTERS[:n_options]
    answer = _FIRST_ANSWER.search(text)
    reply = answer.group(1) if answer else text
    letter, problem = _option_letter(reply, n_options, "The reply is")
    return ParsedAnswer(letter, None, format_ok, problem)


def _option_letter(reply: str, n_options: int, holder: str) -> tuple[str | None, str | None]:
    """(the option letter `reply` gives, None) or (None, why not in plain words)."""
    match = _LETTER_IN_ANSWER.match(reply)
    if match is None:
        shown = reply.strip()[:40] or "nothing"
        return None, f"{holder} {shown!r}, not a letter."
    letter = match.group(1).upper()
    if LETTERS.index(letter) >= n_options:
        valid = f"A-{LETTERS[n_options - 1]}"
        return None, f"The model answered {letter}, which is not one of the options ({valid})."
    return letter, None


# ---------------------------------------------------------------------- rationale conclusion
# The rule: the rationale's conclusion is its last sentence, and within it the part after its
# last colon when there is one ("evidence: answer", as the phantom rationales and many R1-style
# rationales end). The option it names is the mention there that ends last: an option's text
# (case-insensitive, whole words) or a letter reference ("C)", "option C", "answer: C"). A longer
# option text wins over a shorter one ending at the same place ("lung nodule" over "nodule").
# When no option is named whole, a conclusion that is part of exactly one option's text names it
# ("macular degeneration" for "Age-related macular degeneration"). Negations ("not CT") are not
# understood; a conclusion that names no option gives None.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LETTER_REFERENCE = re.compile(
    r"\b(?:option|answer|choice)\s*[:\-]?\s*\(?([A-H])\b|\b([A-H])\)", re.I
)


def _mentions(text: str, options: list[str]) -> list[tuple[int, int, int]]:
    """(end, length, option index) of every option named in `text`."""
    found = []
    for index, option in enumerate(options):
        words = r"\s+".join(re.escape(word) for word in option.split())
        if not words:
            continue
        for match in re.finditer(rf"(?<!\w){words}(?!\w)", text, re.I):
            found.append((match.end(), match.end() - match.start(), index))
    for match in _LETTER_REFERENCE.finditer(text):
        index = LETTERS.index((match.group(1) or match.group(2)).upper())
        if index < len(options):
            found.append((match.end(), match.end() - match.start(), index))
    return found


def rationale_conclusion(rationale: str, options: list[str]) -> int | None:
    """The index of the option a rationale concludes with (see the rule above), or None."""
    sentences = [s for s in _SENTENCE_END.split(rationale.strip()) if s.strip()]
    if not sentences:
        return None
    last = sentences[-1]
    conclusion = last[last.rfind(":") + 1 :]
    for part in (conclusion, last) if ":" in last else (last,):
        found = _mentions(part, options)
        if found:
            return max(found)[2]
    words = re.sub(r"^(?:an?|the)\s+", "", conclusion.strip(" .!?"), flags=re.I)
    if not words:
        return None
    within = [i for i, option in enumerate(options) if _mentions(option, [words])]
    return within[0] if len(within) == 1 else None
