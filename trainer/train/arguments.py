"""The script arguments shared by `python -m trainer grpo` and `python -m trainer sft`.

TRL's `TrlParser((ScriptArguments, GRPOConfig | SFTConfig, ModelConfig))` reads them from a recipe
(`--config configs/<model>/<method>/config_<variant>.yaml`) and lets command-line flags override
it, e.g. `--mode no-thinking --data_files a.json b.json --max_samples 64`. `--mode both` trains
one policy on both Med-R1 templates (the bundled demo policy answers in both modes).
"""

from dataclasses import dataclass, field

from medr1_demo.protocol import NO_THINKING
from trainer.train.data import TRAINING_MODES

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


def parse_recipe(argv: list[str], config_class, prog: str):
    """(ScriptArguments, GRPOConfig|SFTConfig, ModelConfig) from `--config recipe.yaml` + flags."""
    from trl import ModelConfig, TrlParser

    parser = TrlParser((ScriptArguments, config_class, ModelConfig), prog=prog)
    return parser.parse_args_and_config(list(argv))
