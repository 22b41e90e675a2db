"""Experiments built from the trainer's commands.

demo_policy.py      `python -m trainer demo`: rebuilds the bundled demo policies on CPU
validation.py       the demo build's validation split and its choice of checkpoint
demo_report.py      what the demo build prints and draws (held-out figures before/after GRPO)
weak_start.py       `python -m trainer weak-start`: GRPO from a weak SFT warm start, one run
weak_start_runs.py  the same over seeds and thread counts: tables and figures for
                    docs/grpo-phantoms.md
"""
