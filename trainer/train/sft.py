"""`python -m trainer sft`: the supervised baseline (and GRPO warm start) on the same data and prompts.

    python -m trainer sft --config configs/qwen2-vl-2b/sft/config_no_thinking.yaml
    python -m trainer sft --config configs/tiny/sft.yaml   # a CPU warm start for the tiny policy

Same records, same `build_messages` prompt and the same output format as GRPO, so the comparison
with GRPO is the paper's: the target is `<answer>X</answer>` in no-thinking mode; in thinking
mode it is `<think>{rationale}</think>\\n<answer>X</answer>`, taken from the data (records
without a rationale are reported as invalid: Med-R1's own splits have none). The loss covers the
completion only. Output: the same servable checkpoint as `trainer.train.grpo`.
"""

import sys

from trainer.train.arguments import parse_recipe, recipe_path
from trainer.train.data import PreparedData, build_dataset, prepare_data
from trainer.train.grpo import run
from trainer.train.outputs import finish_run, start_run
from trainer.train.policy import resume_target


def train(
    script_args,
    training_args,
    model_args,
    *,
    data: PreparedData | None = None,
    recipe: str | None = None,
    callbacks: list | None = None,
):
    """SFT on prompt/completion rows; returns the finished SFTTrainer."""
    from trl import SFTTrainer

    resume = resume_target(training_args)
    data = data or prepare_data(script_args, sft=True, progress=training_args.process_index == 0)
    # Rows are built on access from light columns; dropping "unused" columns would break that.
    training_args.remove_unused_columns = False
    processor, metadata, shared = start_run(
        "sft", script_args, training_args, model_args, data, recipe, callbacks
    )
    mode, size = script_args.mode, script_args.image_size
    trainer = SFTTrainer(
        train_dataset=build_dataset(data.train, mode, size, sft=True),
        eval_dataset=build_dataset(data.eval, mode, size, sft=True) if data.eval else None,
        **shared,
    )
    result = trainer.train(resume_from_checkpoint=resume)
    finish_run(trainer, processor, metadata, result.metrics, script_args.plots)
    return trainer


def main(argv: list[str]) -> int:
    from trl import SFTConfig

    parsed = parse_recipe(argv, SFTConfig, "python -m trainer sft")
    return run(train, parsed, recipe_path(argv), sft=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
