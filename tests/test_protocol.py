"""Tests for `medr1_demo.protocol`: Med-R1 question strings, prompts and answer readings.

Run: `.venv/bin/python -m pytest tests/test_protocol.py -q`
"""

import json

import pytest

from medr1_demo.protocol import (
    LETTERS,
    MODES,
    NO_THINKING,
    THINKING,
    QuestionError,
    build_messages,
    build_prompt,
    format_question,
    has_mode_format,
    make_solution,
    medr1_answer_text,
    parse_output,
    solution_letter,
    split_question,
)

# (completion, mode, n_options, letter, rationale, format_ok, problem fragment or None)
PARSE_CASES = [
    # the plain no-thinking answer
    ("<answer>C</answer>", NO_THINKING, 4, "C", None, True, None),
    # spaces inside the tag, as Med-R1's solutions are written
    ("<answer> C </answer>", NO_THINKING, 4, "C", None, True, None),
    # lower case letter
    ("<answer>b</answer>", NO_THINKING, 2, "B", None, True, None),
    # surrounding whitespace: leading is allowed by the format, trailing is not
    ("\n <answer>\nD\n</answer>  ", NO_THINKING, 4, "D", None, False, None),
    # letter with its option text
    ("<answer>C) CT</answer>", NO_THINKING, 4, "C", None, True, None),
    # letter in brackets
    ("<answer>(A)</answer>", NO_THINKING, 3, "A", None, True, None),
    # "Answer: B" inside the tag
    ("<answer>Answer: B</answer>", NO_THINKING, 3, "B", None, True, None),
    # letter with a full stop and text
    ("<answer>A. Liver</answer>", NO_THINKING, 2, "A", None, True, None),
    # no tag at all: a reader does not guess
    ("C", NO_THINKING, 4, None, None, False, "no <answer> tag"),
    # empty output
    ("", NO_THINKING, 4, None, None, False, "no output"),
    # whitespace only counts as empty
    ("  \n", NO_THINKING, 4, None, None, False, "no output"),
    # a letter beyond the options given
    ("<answer>E</answer>", NO_THINKING, 4, None, None, True, "not one of the options (A-D)"),
    # a letter beyond two options
    ("<answer>C</answer>", THINKING, 2, None, None, False, "(A-B)"),
    # option text instead of a letter
    ("<answer>CT</answer>", NO_THINKING, 4, None, None, True, "'CT', not a letter"),
    # an empty tag
    ("<answer></answer>", NO_THINKING, 4, None, None, True, "'nothing'"),
    # two answer tags: the first one counts
    ("<answer>A</answer><answer>B</answer>", NO_THINKING, 2, "A", None, True, None),
    # the full thinking format
    ("<think>The scan shows a kidney.</think>\n<answer>B</answer>", THINKING, 2, "B",
     "The scan shows a kidney.", True, None),
    # thinking format across lines
    ("<think>line one\nline two</think><answer>A</answer>", THINKING, 2, "A",
     "line one\nline two", True, None),
    # thinking without an answer keeps the rationale and says what is missing
    ("<think>Could be either.</think>", THINKING, 2, None, "Could be either.", False, "no <answer>"),
    # an unfinished think (cut at the token limit) still shows its rationale
    ("<think>The liver is enlarg", THINKING, 3, None, "The liver is enlarg", False, "no <answer>"),
    # answer without think in thinking mode: right letter, wrong format
    ("<answer>A</answer>", THINKING, 2, "A", None, False, None),
    # think tags in no-thinking mode: no rationale shown, format broken
    ("<think>x</think><answer>A</answer>", NO_THINKING, 2, "A", None, False, None),
    # text after the answer breaks the format but not the letter
    ("<answer>B</answer> because it is round", NO_THINKING, 2, "B", None, False, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("completion", "mode", "n_options", "letter", "rationale", "format_ok", "problem"), PARSE_CASES
)
def test_parse_output(completion, mode, n_options, letter, rationale, format_ok, problem):
    parsed = parse_output(completion, mode, n_options=n_options)
    assert parsed.letter == letter
    assert parsed.rationale == rationale
    assert parsed.format_ok is format_ok
    if problem is None:
        assert parsed.problem is None
    else:
        assert problem in parsed.problem


# (completion, Med-R1's accuracy-reward text)
MEDR1_TEXT_CASES = [
    # tag content stripped
    ("<answer> C </answer>", "C"),
    # no tag: the whole completion, stripped
    ("  C \n", "C"),
    # first of two tags
    ("<answer>A</answer><answer>B</answer>", "A"),
    # an answer split over lines is not read (no DOTALL in Med-R1's pattern): the whole text
    ("<answer>\nC\n</answer>", "<answer>\nC\n</answer>"),
    # option text stays: Med-R1 gives no credit for "C) CT"
    ("<answer>C) CT</answer>", "C) CT"),
    # think then answer
    ("<think>r</think><answer>D</answer>", "D"),
    # empty
    ("", ""),
]


@pytest.mark.parametrize(("completion", "text"), MEDR1_TEXT_CASES)
def test_medr1_answer_text(completion, text):
    assert medr1_answer_text(completion) == text


# (completion, mode, Med-R1's format reward)
FORMAT_CASES = [
    # thinking, exact
    ("<think>x</think><answer>A</answer>", THINKING, True),
    # thinking, newline between the tags
    ("<think>x</think>\n<answer>A</answer>", THINKING, True),
    # thinking, multi-line reasoning (DOTALL)
    ("<think>a\nb</think><answer>A</answer>", THINKING, True),
    # thinking, leading space is not allowed
    (" <think>x</think><answer>A</answer>", THINKING, False),
    # thinking, no answer
    ("<think>x</think>", THINKING, False),
    # thinking, no think
    ("<answer>A</answer>", THINKING, False),
    # no-thinking, exact
    ("<answer>A</answer>", NO_THINKING, True),
    # no-thinking, leading whitespace allowed
    ("\n <answer>A</answer>", NO_THINKING, True),
    # no-thinking, trailing text
    ("<answer>A</answer> done", NO_THINKING, False),
    # no-thinking, a think block
    ("<think>x</think><answer>A</answer>", NO_THINKING, False),
    # no-thinking, nothing
    ("", NO_THINKING, False),
]


@pytest.mark.parametrize(("completion", "mode", "expected"), FORMAT_CASES)
def test_has_mode_format(completion, mode, expected):
    assert has_mode_format(completion, mode) is expected


def test_solutions_round_trip():
    for letter in LETTERS:
        assert make_solution(letter) == f"<answer> {letter} </answer>"
        assert solution_letter(make_solution(letter)) == letter


def test_format_question_matches_omnimedvqa_style():
    text = format_question(" What imaging technique is employed? ", [" Mammogram", "PET ", "CT"])
    assert text == "What imaging technique is employed? A)Mammogram, B)PET, C)CT"


@pytest.mark.parametrize("n_options", range(2, 9))
def test_split_question_round_trips(n_options):
    options = [f"Option {LETTERS[i]} text" for i in range(n_options)]
    question, parsed = split_question(format_question("Which one?", options))
    assert (question, parsed) == ("Which one?", options)


def test_options_with_commas_round_trip():
    options = ["Adenocarcinoma, left lower lobe", "Normal", "Cyst, 3 mm, benign"]
    text = format_question("What is shown?", options)
    assert split_question(text) == ("What is shown?", options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["Only one"], "2 to 8"),  # too few
        ([f"o{i}" for i in range(9)], "2 to 8"),  # too many
        (["CT", "  "], "empty"),  # a blank option
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(QuestionError, match=message):
        format_question("Which?", options)


def test_bad_questions_are_refused():
    with pytest.raises(QuestionError, match="empty"):
        format_question("   ", ["CT", "MRI"])
    with pytest.raises(QuestionError, match="No options"):
        split_question("Which modality is this?")
    with pytest.raises(QuestionError, match="no question"):
        split_question("A)CT, B)MRI")


def test_prompts_and_messages_follow_medr1():
    question = format_question("Which modality?", ["CT", "MRI"])
    thinking, plain = build_prompt(question, THINKING), build_prompt(question, NO_THINKING)
    assert thinking.startswith(question + " Your task: 1. Think through")
    assert "<think>...</think>" in thinking and "<think>" not in plain
    assert plain.endswith("No extra information or text outside of this tag.")
    for mode in MODES:
        (turn,) = build_messages(question, mode)  # one user turn, no system message
        assert turn["role"] == "user"
        assert [part["type"] for part in turn["content"]] == ["image", "text"]
        assert turn["content"][1]["text"] == build_prompt(question, mode)
    with pytest.raises(ValueError):
        build_prompt(question, "fast")


def test_real_records_round_trip(medr1_sample):
    records = json.loads(medr1_sample.read_text(encoding="utf-8"))
    assert len(records) >= 10
    for record in records:
        question, options = split_question(record["problem"])
        assert format_question(question, options) == record["problem"]
        assert 2 <= len(options) <= 4
        assert solution_letter(record["solution"]) in LETTERS[: len(options)]


# ------------------------------------------------------------------------------- prompt sets

# Copied by hand from Yuxiang-Lai117/Med-R1 @ 88d76c7, so a change to the templates shows here.
MEDR1_EVAL_STRINGS = {
    # src/eval_vqa/test_qwen2vl_vqa.py:43
    THINKING: "{Question} Think through the question step by step in <think>...</think> tags. "
    "Then provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags.",
    # src/eval_vqa/test_qwen2vl_vqa_nothink.py:44
    NO_THINKING: "{Question} Provide the correct single-letter choice (A, B, C, D,...) inside "
    "<answer>...</answer> tags.",
}
# src/eval_vqa/test_qwen2vl_vqa_zero_shot.py:43
ZERO_SHOT_STRING = "{Question} Provide the correct single-letter choice (A, B, C, D,...)."


def test_prompt_sets_hold_medr1s_evaluation_strings_verbatim():
    from medr1_demo.protocol import MEDR1_EVAL_PROMPTS, ZERO_SHOT_PROMPTS, prompt_modes

    question = format_question("Which modality?", ["CT", "MRI"])
    for mode, template in MEDR1_EVAL_STRINGS.items():
        expected = template.format(Question=question)
        assert build_prompt(question, mode, MEDR1_EVAL_PROMPTS) == expected
    assert build_prompt(question, NO_THINKING, ZERO_SHOT_PROMPTS) == ZERO_SHOT_STRING.format(
        Question=question
    )
    assert prompt_modes(ZERO_SHOT_PROMPTS) == (NO_THINKING,)
    assert prompt_modes() == prompt_modes(MEDR1_EVAL_PROMPTS) == MODES
    with pytest.raises(ValueError, match="no thinking template"):
        build_prompt(question, THINKING, ZERO_SHOT_PROMPTS)
    with pytest.raises(ValueError, match="prompts must be one of"):
        build_prompt(question, THINKING, "clinical")
    assert build_prompt(question, THINKING) == build_prompt(question, THINKING, "training")


# (reply to the zero-shot prompt, n_options, letter, format kept, problem fragment or None)
BARE_CASES = [
    # the letter alone, as asked
    ("B", 4, "B", True, None),
    # surrounding whitespace is forgiven
    (" B\n", 4, "B", True, None),
    # the letter and its option text
    ("B) MRI", 4, "B", False, None),
    # "Answer: B"
    ("Answer: B", 4, "B", False, None),
    # a tagged reply is read from its tag
    ("<answer>B</answer>", 4, "B", False, None),
    # a sentence is not a letter
    ("The image shows an MRI.", 4, None, False, "not a letter"),
    # a letter beyond the options
    ("E", 4, None, False, "not one of the options"),
    # nothing at all
    ("", 4, None, False, "no output"),
]


@pytest.mark.parametrize(("reply", "n_options", "letter", "format_ok", "problem"), BARE_CASES)
def test_parse_bare_answer(reply, n_options, letter, format_ok, problem):
    from medr1_demo.protocol import parse_bare_answer

    parsed = parse_bare_answer(reply, n_options)
    assert (parsed.letter, parsed.format_ok) == (letter, format_ok)
    assert (parsed.problem is None) if problem is None else (problem in parsed.problem)


def test_medr1_sft_messages_put_the_system_prompt_and_the_text_first():
    from medr1_demo.protocol import MEDR1_SFT_SYSTEM_PROMPT, sft_messages

    # src/r1-v/src/open_r1/sft.py:119-121
    assert MEDR1_SFT_SYSTEM_PROMPT == (
        "Your task: Provide the correct single-letter choice (A, B, C, D,...) inside "
        "<answer>...</answer> tags."
    )
    question = format_question("Which modality?", ["CT", "MRI"])
    system, user = sft_messages(question)
    assert system == {
        "role": "system",
        "content": [{"type": "text", "text": MEDR1_SFT_SYSTEM_PROMPT}],
    }
    assert user["content"] == [{"type": "text", "text": question}, {"type": "image"}]


def test_the_app_says_it_asks_with_the_training_prompts():
    from medr1_demo.results import ModelInfo
    from medr1_demo.web.render import model_panel

    fields = {f: "x" for f in ModelInfo.__dataclass_fields__}
    html = model_panel(ModelInfo(**{**fields, "parameters": 1000}))
    assert "Med-R1&#x27;s training prompts (what the policy learned)" in html
