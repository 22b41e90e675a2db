"""`python -m trainer sft`: the supervised baseline (and GRPO warm start) on the same data and prompts.

    python -m trainer sft --config configs/qwen2-vl-2b/sft/config_no_thinking.yaml
    python -m trainer sft --config configs/tiny/sft.yaml   # a CPU warm start for the tiny policy

Two layouts (`sft_layout`, see `trainer.train.data`):

- "project" (configs/qwen2-vl-2b/sft/config_no_thinking.yaml, the GRPO warm start): the same
  `build_messages` prompt and output format as GRPO: the target is `<answer>X</answer>` in
  no-thinking mode; in thinking mode `<think>{rationale}</think>\\n<answer>X</answer>`, taken from
  the data (records without a rationale are reported as invalid: Med-R1's own splits have none).
  The loss covers the completion only.
- "medr1" (configs/qwen2-vl-2b/sft/config_medr1.yaml): Med-R1's SFT baseline, its system prompt and
  message order, with `completion_only_loss: false`: the loss covers the whole sequence except
  padding and image placeholder tokens, as Med-R1's collator masked them.

Output: the same servable checkpoint as `trainer.train.grpo`.
"""

import sys

from trainer.train.arguments import parse_or_report, recipe_path
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
    mode, size, layout = script_args.mode, script_args.image_size, script_args.sft_layout
    trainer = SFTTrainer(
        train_dataset=build_dataset(data.train, mode, size, sft=True, layout=layout),
        eval_dataset=build_dataset(data.eval, mode, size, sft=True, layout=layout)
        if data.eval
        else None,
        **shared,
    )
    if training_args.completion_only_loss is False:  # the prompt is in the loss: not its image
        image_token = getattr(processor, "image_token", "<|image_pad|>")
        image_id = processor.tokenizer.convert_tokens_to_ids(image_token)
        trainer.data_collator = WithoutImageLabels(trainer.data_collator, image_id)
    result = trainer.train(resume_from_checkpoint=resume)
    finish_run(trainer, processor, metadata, result.metrics, script_args.plots)
    return trainer


class WithoutImageLabels:
    """A collator wrapper that keeps image placeholder tokens out of the loss (label -100).

    With the loss on the whole sequence, TRL's collator would train the model to predict the
    hundreds of `<|image_pad|>` tokens each image stands for; Med-R1's collator masked them.
    """

    def __init__(self, collator, image_token_id: int):
        self.collator, self.image_token_id = collator, image_token_id

    def __call__(self, examples):
        batch = self.collator(examples)
        batch["labels"][batch["input_ids"] == self.image_token_id] = -100
        return batch


def main(argv: list[str]) -> int:
    from trl import SFTConfig

    parsed = parse_or_report(argv, SFTConfig, "python -m trainer sft")
    if parsed is None:
        return 2
    return run(train, parsed, recipe_path(argv), sft=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
