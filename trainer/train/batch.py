"""The global batch of one optimizer step, and the gradient accumulation that gives Med-R1's.

Med-R1 stepped on 4 prompts x 4 generations = 16 completions (1 prompt per GPU, gradient
accumulation 2, 2 GPUs). TRL 1.16 counts completions per device, so the same 16 need another
accumulation on every GPU count. A recipe says `global_prompts_per_step: 4` instead of a fixed
`gradient_accumulation_steps`; `accumulation_steps` derives the accumulation from the number of
processes when the recipe is parsed, and refuses (with the numbers) a count it cannot divide:

    >>> accumulation_steps(prompts=4, generations=4, per_device=2, processes=8)
    1
    >>> StepBatch(per_device=2, accumulation=8, processes=1, generations=4).describe()
    '4 prompts x 4 generations = 16 completions per optimizer step (2 per device x 8 accumulation steps x 1 process)'

For SFT a prompt is one example (`generations=1`). `python -m trainer grpo|sft` prints the line at
start and keeps it in `medr1_policy.json`.
"""

from dataclasses import dataclass


class BatchError(ValueError):
    """The wanted global batch cannot be split over these processes; str(err) says what to change."""


@dataclass(frozen=True)
class StepBatch:
    """What one optimizer step sees: per-device batch x accumulation x processes."""

    per_device: int  # completions (GRPO) or examples (SFT) per device per forward pass
    accumulation: int
    processes: int
    generations: int = 1  # completions per prompt (GRPO num_generations; 1 for SFT)

    @property
    def completions(self) -> int:
        return self.per_device * self.accumulation * self.processes

    @property
    def prompts(self) -> float:
        return self.completions / self.generations

    def describe(self) -> str:
        processes = f"{self.processes} process{'es' if self.processes != 1 else ''}"
        split = (
            f"{self.per_device} per device x {self.accumulation} accumulation steps x {processes}"
        )
        prompts = f"{self.prompts:g}"
        if self.generations == 1:
            return f"{prompts} examples per optimizer step ({split})"
        return (
            f"{prompts} prompts x {self.generations} generations = {self.completions} completions "
            f"per optimizer step ({split})"
        )

    def as_dict(self) -> dict:
        return {
            "prompts": self.prompts,
            "generations": self.generations,
            "completions": self.completions,
            "per_device": self.per_device,
            "accumulation": self.accumulation,
            "processes": self.processes,
        }


def accumulation_steps(*, prompts: int, generations: int, per_device: int, processes: int) -> int:
    """The gradient accumulation that makes `prompts` x `generations` per step on `processes`."""
    if prompts < 1 or generations < 1 or per_device < 1 or processes < 1:
        raise BatchError("prompts, generations, per-device batch and processes must be positive")
    total = prompts * generations
    per_pass = per_device * processes
    if total % per_pass:
        unit = "completions" if generations > 1 else "examples"
        what = f"{prompts} prompts x {generations} generations = " if generations > 1 else ""
        fits = [d for d in range(1, total + 1) if total % (d * processes) == 0]
        hint = (
            f"with {processes} processes use --per_device_train_batch_size "
            + " or ".join(str(d) for d in fits[-3:])
            if fits
            else f"{processes} processes cannot share {total} {unit} evenly"
        )
        raise BatchError(
            f"global_prompts_per_step: {what}{total} {unit} per step cannot be split into "
            f"{per_device} per device x {processes} processes; {hint}"
        )
    return total // per_pass


def step_batch(training_args, generations: int = 1) -> StepBatch:
    """The global batch a parsed GRPOConfig/SFTConfig gives on the current processes."""
    return StepBatch(
        per_device=training_args.per_device_train_batch_size,
        accumulation=training_args.gradient_accumulation_steps,
        processes=training_args.world_size,
        generations=generations,
    )
