"""GRPO visibly learns on CPU: from a weak SFT warm start, Med-R1's rewards raise accuracy.

    .venv/bin/python -m pytest tests/test_grpo_learns.py -q -s   # about 2.5 minutes on 2 cores

One run of the experiment of docs/grpo-phantoms.md (`trainer.experiments.weak_start`, its default
settings, seed 0): a small Qwen2-VL learns phantom modality recognition; a short SFT run teaches
the no-thinking format and a little of the task; GRPO with Med-R1's rewards (and its KL weight)
must do the rest by sampling. Held-out accuracy is scored greedy by `python -m trainer eval` on
400 questions.

The gain and entropy margins asserted are those every run of the multi-run experiment cleared
(5 seeds, each with OMP_NUM_THREADS=1 and =2: two float environments), with room to spare; the
worst runs are named in the comments. The format floor (0.9) is this test's own: the run table
does not record format. A single run's outcome depends on the machine's floats, so the test does not
assert any one run's figures.
"""

import pytest

from trainer.experiments.weak_start import Settings, experiment

pytestmark = pytest.mark.slow


def test_grpo_raises_held_out_accuracy_without_collapse(tmp_path):
    report = experiment(tmp_path / "weak-start", Settings())
    before, after = report["held_out"]["after_sft"], report["held_out"]["after_grpo"]
    entropy = report["entropy"]
    print(report["held_out"], report["accuracy_reward"], entropy)

    assert before["items"] == after["items"] == 400  # standard error of one run <= 2.5 points
    assert before["format_kept"] >= 0.9  # the warm start already writes the format
    assert after["format_kept"] >= 0.9
    # Over the 10 runs (seeds 0-4, OMP_NUM_THREADS=1 and 2) the held-out gain was +5.8 to +22.7
    # points, mean +14.3; the worst run, seed 3 with 1 thread, +5.8 (seed 0: +13.7 and +18.8).
    assert after["accuracy"] >= before["accuracy"] + 0.03, report["held_out"]
    # No entropy collapse: the lowest mean entropy of the last 10 steps over the runs was 0.083
    # (seed 3, 2 threads, at 97.8% accuracy); seed 0's were 0.28 and 0.32. A collapsed policy
    # (the earlier design without the KL term) fell to about 0.03.
    assert entropy["last_10_steps"] >= 0.04, entropy
    # The training reward is not asserted: it is the accuracy of temperature-1 samples, and in
    # two runs of seed 4 its mean over the first vs the last 10 steps barely moved (+0.03, +0.01;
    # 10 steps are 320 noisy samples) while held-out accuracy rose 18-20 points.
    assert (tmp_path / "weak-start" / "training_curves.png").stat().st_size > 5000
