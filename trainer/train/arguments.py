"""The script arguments shared by `python -m trainer grpo` and `python -m trainer sft`.

TRL's `TrlParser((ScriptArguments, GRPOConfig | SFTConfig, ModelConfig))` reads them from a recipe
(`--config configs/<model>/<method>/config_<variant>.yaml`) and lets command-line flags override
it, e.g. `--mode no-thinking --data_files a.json b.json --max_samples 64`. `--mode both` trains
one policy on both Med-R1 templates (the bundled demo policy answers in both modes).

`global_prompts_per_step` (Med-R1's recipes: 4 for GRPO, 128 for SFT) sets
`gradient_accumulation_steps` from the number of processes when the recipe is parsed, so a recipe
steps on the same global batch with `python -m trainer` on one GPU or `accelerate launch` on 8
(`trainer.train.batch`).
"""

from dataclasses import dataclass, field

from medr1_demo.protocol import NO_THINKING
from trainer.train.batch import BatchError, accumulation_steps
from trainer.train.data import SFT_LAYOUTS, TRAINING_MODES

SPLITS = ("train", "test", "all")
IMAGE_CHECKS = ("quick", "full")


@dataclass
class ScriptArguments:
    """What to train on and how to ask: data, prompt mode, rewards, image size, validation."""

    data_files: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Training data: Med-R1 split JSON files, OmniMedVQA QA JSON files, JSON Lines files, "
            "datasets saved with save_to_disk, or folders of JSON/JSONL files."
        },
    )
    eval_data_files: list[str] | None = field(
        default=None, metadata={"help": "Optional evaluation data, same formats as data_files."}
    )
    image_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder the records' image paths are relative to (the OmniMedVQA root for Med-R1 "
            "splits). Default: each data file's own folder."
        },
    )
    mode: str = field(
        default=NO_THINKING,
        metadata={
            "help": "Prompt and format: 'thinking', 'no-thinking', or 'both' (each record gives "
            "one row per mode; 'format' then checks each completion against its own row's mode).",
            "choices": list(TRAINING_MODES),
        },
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"],
        metadata={
            "help": "Rewards by name (accuracy, format, format_thinking, format_no_thinking) or "
            "module:function; 'format' follows --mode. Weights: --reward_weights."
        },
    )
    image_size: int = field(
        default=384,
        metadata={
            "help": "Images are resized to image_size x image_size on access (0: keep size)."
        },
    )
    min_pixels: int | None = field(
        default=None, metadata={"help": "Image processor min_pixels (default: the checkpoint's)."}
    )
    max_pixels: int | None = field(
        default=None,
        metadata={
            "help": "Image processor max_pixels (Med-R1: 401408; default: the checkpoint's)."
        },
    )
    modalities: list[str] | None = field(
        default=None,
        metadata={"help": "Keep only these modalities (CT, MRI, X-Ray, Ultrasound, ...)."},
    )
    question_types: list[str] | None = field(
        default=None,
        metadata={"help": "Keep only these question types (Modality Recognition, ...)."},
    )
    split: str = field(
        default="train",
        metadata={
            "help": "For OmniMedVQA QA files, which part of the deterministic split to use.",
            "choices": list(SPLITS),
        },
    )
    test_fraction: float = field(
        default=0.2,
        metadata={
            "help": "Share of OmniMedVQA questions (by hash of question_id) held out as test."
        },
    )
    split_seed: int = field(
        default=0,
        metadata={"help": "Salt of the question_id hash that splits OmniMedVQA QA files."},
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many training records (first ones)."}
    )
    skip_invalid: bool = field(
        default=False,
        metadata={"help": "Drop invalid records and train on the rest instead of stopping."},
    )
    image_check: str = field(
        default="quick",
        metadata={
            "help": "How images are checked before training: 'quick' (PNG checksums, JPEG draft "
            "decode) or 'full' (the same decode as training).",
            "choices": list(IMAGE_CHECKS),
        },
    )
    check_workers: int = field(
        default=8, metadata={"help": "Threads that check images before training."}
    )
    global_prompts_per_step: int = field(
        default=0,
        metadata={
            "help": "Prompts per optimizer step over all processes (GRPO: each with num_generations "
            "completions; SFT: examples). Sets gradient_accumulation_steps from the number of "
            "processes; 0: use gradient_accumulation_steps as given."
        },
    )
    sft_layout: str = field(
        default="project",
        metadata={
            "help": "SFT rows: 'project' (the GRPO prompt, image first, target <answer>X</answer>) or "
            "'medr1' (Med-R1's SFT: its system prompt, question text before the image, target "
            "'{rationale}\\n\\n{solution}' or the solution alone).",
            "choices": list(SFT_LAYOUTS),
        },
    )
    description: str | None = field(
        default=None,
        metadata={"help": "One line saved in medr1_policy.json, shown in the app's model panel."},
    )
    plots: bool = field(
        default=True, metadata={"help": "Write training curves (PNG + CSV) beside the checkpoint."}
    )

    def __post_init__(self):
        if self.mode not in TRAINING_MODES:
            raise ValueError(f"mode must be one of {TRAINING_MODES}, not {self.mode!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {self.split!r}")
        if self.image_check not in IMAGE_CHECKS:
            raise ValueError(f"image_check must be one of {IMAGE_CHECKS}, not {self.image_check!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), not {self.test_fraction}")
        if self.sft_layout not in SFT_LAYOUTS:
            raise ValueError(f"sft_layout must be one of {SFT_LAYOUTS}, not {self.sft_layout!r}")
        if self.global_prompts_per_step < 0:
            raise ValueError("global_prompts_per_step must be 0 (off) or a number of prompts")
        if self.image_size < 0:
            raise ValueError(f"image_size must be 0 (keep) or positive, not {self.image_size}")
        if isinstance(self.data_files, str):  # a recipe may give one file as a plain string
            self.data_files = [self.data_files]
        if isinstance(self.eval_data_files, str):
            self.eval_data_files = [self.eval_data_files]


def recipe_path(argv: list[str]) -> str | None:
    """The `--config` file named on the command line, if any (kept in the checkpoint metadata)."""
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def parse_or_report(argv: list[str], config_class, prog: str):
    """`parse_recipe`, or None after printing why the batch cannot be split (exit status 2)."""
    import sys

    try:
        return parse_recipe(argv, config_class, prog)
    except BatchError as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def parse_recipe(argv: list[str], config_class, prog: str):
    """(ScriptArguments, GRPOConfig|SFTConfig, ModelConfig) from `--config recipe.yaml` + flags.

    With `global_prompts_per_step`, a first look (TRL's own batch checks skipped: the
    accumulation is not known yet) gives the per-device batch, the generations and the number of
    processes; the recipe is then parsed with the derived `--gradient_accumulation_steps`, so
    TRL's checks and derived sizes (GRPO's generation batch) see the final value. Raises
    BatchError when the processes cannot share the batch or the recipe also fixes the accumulation.
    """
    from trl import ModelConfig, TrlParser

    first = TrlParser((ScriptArguments, _first_look(config_class), ModelConfig), prog=prog)
    script_args, training_args, _ = first.parse_args_and_config(list(argv))
    parser = TrlParser((ScriptArguments, config_class, ModelConfig), prog=prog)
    if not script_args.global_prompts_per_step:
        return parser.parse_args_and_config(list(argv))
    if training_args.gradient_accumulation_steps != 1:
        raise BatchError(
            f"both global_prompts_per_step ({script_args.global_prompts_per_step}) and "
            f"gradient_accumulation_steps ({training_args.gradient_accumulation_steps}) are set; "
            "give one (--global_prompts_per_step 0 keeps gradient_accumulation_steps)"
        )
    steps = accumulation_steps(
        prompts=script_args.global_prompts_per_step,
        generations=getattr(training_args, "num_generations", 1),
        per_device=training_args.per_device_train_batch_size,
        processes=training_args.world_size,
    )
    return parser.parse_args_and_config([*argv, "--gradient_accumulation_steps", str(steps)])


def _first_look(config_class):
    """`config_class` with only TrainingArguments' own set-up after parsing (no TRL checks)."""
    from transformers import TrainingArguments

    class FirstLook(config_class):
        def __post_init__(self):
            TrainingArguments.__post_init__(self)

    return FirstLook
