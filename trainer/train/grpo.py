"""`python -m trainer grpo`: GRPO with Med-R1's rewards on TRL's GRPOTrainer, thinking or no-thinking.

    python -m trainer grpo --config configs/qwen2-vl-2b/grpo/config_thinking.yaml
    accelerate launch --config_file configs/accelerate/zero2.yaml -m trainer grpo --config RECIPE
    python -m trainer grpo --config RECIPE --resume_from_checkpoint true   # after a crash

Order of work: parse the recipe, check and validate every data record (exit 2 with
`file:index: reason` lines, before any model is loaded), then load the policy and train. The
output folder is a checkpoint the app serves as it is (see `trainer.train.outputs`).

A randomly initialised model scores 0 on every Med-R1 reward, so all advantages are 0 and GRPO
learns nothing from it: start from an instruction-tuned model or an SFT warm start
(`python -m trainer sft`).
"""

import sys

from medr1_demo.policy.checkpoint import PolicyLoadError
from trainer.train.arguments import parse_or_report, recipe_path
from trainer.train.data import DataError, PreparedData, build_dataset, prepare_data
from trainer.train.outputs import finish_run, start_run
from trainer.train.policy import resume_target
from trainer.train.rewards import resolve_rewards


def check_rewards(script_args, training_args) -> list:
    """The reward functions, after checking their weights match (before anything heavy loads)."""
    funcs = resolve_rewards(script_args.reward_funcs, script_args.mode)
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(funcs):
        raise ValueError(
            f"{len(weights)} reward_weights for {len(funcs)} reward_funcs "
            f"({', '.join(script_args.reward_funcs)}); give one weight per reward"
        )
    return funcs


def train(
    script_args,
    training_args,
    model_args,
    *,
    data: PreparedData | None = None,
    recipe: str | None = None,
    callbacks: list | None = None,
):
    """Med-R1 GRPO (open-r1 style); returns the finished GRPOTrainer."""
    from trl import GRPOTrainer

    reward_funcs = check_rewards(script_args, training_args)
    resume = resume_target(training_args)
    data = data or prepare_data(script_args, progress=training_args.process_index == 0)
    processor, metadata, shared = start_run(
        "grpo", script_args, training_args, model_args, data, recipe, callbacks
    )
    mode, size = script_args.mode, script_args.image_size
    trainer = GRPOTrainer(
        reward_funcs=reward_funcs,
        train_dataset=build_dataset(data.train, mode, size),
        eval_dataset=build_dataset(data.eval, mode, size) if data.eval else None,
        **shared,
    )
    result = trainer.train(resume_from_checkpoint=resume)
    finish_run(trainer, processor, metadata, result.metrics, script_args.plots)
    return trainer


def main(argv: list[str]) -> int:
    from trl import GRPOConfig

    parsed = parse_or_report(argv, GRPOConfig, "python -m trainer grpo")
    if parsed is None:
        return 2
    script_args, training_args, model_args = parsed
    return run(
        train,
        (script_args, training_args, model_args),
        recipe_path(argv),
        precheck=lambda: check_rewards(script_args, training_args),
    )


def run(train_fn, parsed: tuple, recipe: str | None, *, sft: bool = False, precheck=None) -> int:
    """Check the cheap things, validate the data, train; exit status 2 with a message on bad input."""
    script_args, training_args, model_args = parsed
    try:
        if precheck is not None:
            precheck()
        resume_target(training_args)
        data = prepare_data(script_args, sft=sft, progress=training_args.process_index == 0)
    except DataError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        print(f"\n{err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        train_fn(script_args, training_args, model_args, data=data, recipe=recipe)
    except PolicyLoadError as err:  # no such model folder, hub repo or processor
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
