"""The policy: loading a Med-R1 checkpoint and generating its answers. No Gradio here.

engine.py      `PolicyEngine`: load, answer both modes in one batch, stream, answer many
generation.py  what every `generate` call shares: settings, per-row stops, streaming, errors
batching.py    continuous batching: finished rows leave, waiting ones join
checkpoint.py  folders, hub repos and sub-folders, processors, LoRA, 4/8-bit
tiny.py        tiny Qwen2-VL checkpoints built offline (tests, benchmarks, the demo policy)
"""
