"""The Med-R1 trainer: `python -m trainer <command>` (grpo, sft, eval, synth, merge, validate).

Imports go one way: trainer -> medr1_demo, never back.
"""
