"""Experiments built from the trainer's commands.

demo_policy.py  `python -m trainer demo`: rebuilds the bundled demo policy on CPU
weak_start.py   GRPO from a weak SFT warm start: the evidence in docs/grpo-phantoms.md
"""
