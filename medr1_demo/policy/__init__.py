"""The policy: loading a Med-R1 checkpoint and generating its answers. No Gradio here.

engine.py      `PolicyEngine`: load, answer both modes in one batch, stream, answer many
asking.py      one question in several modes with its controls: the rows, then the answers
generation.py  what every `generate` call shares: settings, per-row stops, streaming, errors
batching.py    continuous batching: finished rows leave, waiting ones join
scheduler.py   one running batch shared by every user's requests
letters.py     option probabilities where a mode wrote its answer
relevance.py   where each mode looked: relevance maps of the answer letter over the picture
trust.py       the image and order controls and the rationale check, in words (no torch)
picture.py     the picture a policy sees: its training size, for the app and the trainer alike
shared_pictures.py  rows showing one scan prepare and encode it once (modes, controls, groups)
checkpoint.py  folders, hub repos and sub-folders, processors, LoRA, 4/8-bit
catalogue.py   the policies that can be served, and Auto routing by modality
library.py     loaded policies: on first use, least recently used unloaded
serving.py     a server's policies from its settings, and what the page may show of them
tiny.py        tiny Qwen2-VL checkpoints built offline (tests, benchmarks, the demo policy)
"""
