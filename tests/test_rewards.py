"""Med-R1's rewards, case by case, in both modes; run with `pytest tests/test_rewards.py -q`.

Each table row is one completion with the reward Med-R1's own code would give it. The ground truth
is always `<answer> C </answer>` (spaced, as in the released split files).
"""

import doctest

import pytest

from medr1_demo.protocol import NO_THINKING, THINKING
from trainer.train import rewards

TRUTH = "<answer> C </answer>"

# (completion, accuracy, format thinking, format no-thinking)
CASES = [
    # the no-thinking answer exactly as trained
    ("<answer>C</answer>", 1.0, 0.0, 1.0),
    # the thinking answer exactly as trained
    ("<think>Dense bone, axial slice.</think>\n<answer>C</answer>", 1.0, 1.0, 0.0),
    # no tags at all: the whole text is compared, and a bare letter still counts
    ("C", 1.0, 0.0, 0.0),
    # no tags, a sentence: the whole text is not the letter
    ("The answer is C", 0.0, 0.0, 0.0),
    # extra text after the answer breaks the format but not the accuracy
    ("<answer>C</answer> because it is a CT", 1.0, 0.0, 0.0),
    # extra text before the think block breaks the thinking format
    ("Sure! <think>x</think><answer>C</answer>", 1.0, 0.0, 0.0),
    # two answer tags: only the first one is read
    ("<answer>B</answer><answer>C</answer>", 0.0, 0.0, 1.0),
    # two answer tags, the first right: accuracy counts it
    ("<answer>C</answer><answer>B</answer>", 1.0, 0.0, 1.0),
    # lower case letter: no case folding in Med-R1
    ("<answer>c</answer>", 0.0, 0.0, 1.0),
    # option text after the letter: no partial credit
    ("<answer>C)CT</answer>", 0.0, 0.0, 1.0),
    # newline inside the answer: Med-R1's accuracy pattern has no DOTALL, so the tag is not read and
    # the whole completion is compared; the format pattern (DOTALL) still matches
    ("<answer>\nC\n</answer>", 0.0, 0.0, 1.0),
    # whitespace inside and around: stripped for accuracy, leading whitespace allowed by the format
    ("  <answer>  C  </answer>", 1.0, 0.0, 1.0),
    # trailing whitespace after the closing tag: the full match fails (Med-R1's regex has no \s* there)
    ("<answer>C</answer>\n", 1.0, 0.0, 0.0),
    # whitespace between think and answer is allowed
    ("<think>a</think>   \n\n<answer>C</answer>", 1.0, 1.0, 0.0),
    # empty completion
    ("", 0.0, 0.0, 0.0),
    # empty answer tag
    ("<answer></answer>", 0.0, 0.0, 1.0),
    # an unclosed think block
    ("<think>reasoning<answer>C</answer>", 1.0, 0.0, 0.0),
    # wrong letter, perfect format
    ("<think>MRI contrast</think><answer>A</answer>", 0.0, 1.0, 0.0),
]


def as_messages(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(("completion", "accuracy", "thinking", "no_thinking"), CASES)
def test_reward_table(completion, accuracy, thinking, no_thinking):
    for given in (completion, as_messages(completion)):  # TRL's conversational form and plain text
        assert rewards.accuracy_reward([given], solution=[TRUTH]) == [accuracy]
        assert rewards.format_thinking_reward([given]) == [thinking]
        assert rewards.format_no_thinking_reward([given]) == [no_thinking]


def test_rewards_follow_batch_order_and_truth_spacing():
    completions = [as_messages("<answer>A</answer>"), as_messages("<answer>B</answer>")]
    # Truths written with and without Med-R1's spaces read the same.
    assert rewards.accuracy_reward(
        completions, solution=["<answer>B</answer>", "<answer> B </answer>"]
    ) == [
        0.0,
        1.0,
    ]


def test_structured_content_is_read_as_text():
    completion = [
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>C</answer>"}]}
    ]
    assert rewards.accuracy_reward([completion], solution=[TRUTH]) == [1.0]


@pytest.mark.parametrize("name", [*rewards.REWARDS, *rewards.MODE_DEPENDENT])
@pytest.mark.parametrize("mode", [THINKING, NO_THINKING])
def test_every_registry_entry_resolves(name, mode):
    func = rewards.resolve_reward(name, mode)
    out = func([as_messages("<answer>C</answer>")], solution=[TRUTH])
    assert out in ([0.0], [1.0])


def test_format_follows_mode():
    assert rewards.resolve_reward("format", THINKING) is rewards.format_thinking_reward
    assert rewards.resolve_reward("format", NO_THINKING) is rewards.format_no_thinking_reward
    names = [f.__name__ for f in rewards.resolve_rewards(["accuracy", "format"], THINKING)]
    assert names == ["accuracy_reward", "format_thinking_reward"]


def test_both_modes_check_each_row_against_its_own_mode():
    assert rewards.resolve_reward("format", "both") is rewards.format_reward
    thinking = "<think>Dense bone.</think>\n<answer>C</answer>"
    plain = "<answer>C</answer>"
    out = rewards.format_reward(
        [as_messages(thinking), as_messages(plain), as_messages(thinking), as_messages(plain)],
        solution=[TRUTH] * 4,
        mode=[THINKING, NO_THINKING, NO_THINKING, THINKING],
    )
    assert out == [1.0, 1.0, 0.0, 0.0]


def test_import_path_and_unknown_names():
    assert (
        rewards.resolve_reward("trainer.train.rewards:accuracy_reward", THINKING)
        is rewards.accuracy_reward
    )
    with pytest.raises(ValueError, match="unknown reward 'accuracy_typo'"):
        rewards.resolve_reward("accuracy_typo", THINKING)
    with pytest.raises(ValueError, match="cannot be imported"):
        rewards.resolve_reward("trainer.train.rewards:missing", THINKING)
    with pytest.raises(ValueError, match="mode must be one of"):
        rewards.resolve_reward("format", "fast")
    with pytest.raises(ValueError, match="reward_funcs is empty"):
        rewards.resolve_rewards([], THINKING)


def test_docstring_examples():
    result = doctest.testmod(rewards)
    assert result.attempted >= 4 and result.failed == 0
