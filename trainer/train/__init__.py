"""Training: GRPO with Med-R1's rewards and the SFT baseline, on TRL.

grpo.py       `python -m trainer grpo`          sft.py        `python -m trainer sft`
validate.py   `python -m trainer validate`      merge.py      `python -m trainer merge`
arguments.py  the recipe's script arguments (TrlParser)
batch.py      the global batch per optimizer step; accumulation from the process count
data.py       validating every record (read by medr1_demo.batch.sources); the TRL rows
rewards.py    Med-R1's rewards by name
policy.py     the policy a run starts from: folder, processor, LoRA, 4/8-bit
outputs.py    what a run leaves: a servable checkpoint, metadata, training curves
"""
