"""The recipes in configs/ against Med-R1's own settings: precision, global batch, sampling, SFT.

Run: `.venv/bin/python -m pytest tests/test_recipes.py -q`. Every recipe is parsed the way
`python -m trainer` parses it; GPU recipes (bf16) get `--use_cpu true` on a host without CUDA.
The multi-GPU cases compute the accumulation for 2 and 8 processes with the function the parser
calls (this host runs one process).
"""

from pathlib import Path

import pytest
import yaml

from trainer.train import grpo, sft
from trainer.train.arguments import parse_recipe
from trainer.train.batch import BatchError, StepBatch, accumulation_steps
from trainer.train.policy import full_fine_tuning, model_init_kwargs

ROOT = Path(__file__).resolve().parents[1]
TRAINING_RECIPES = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name in ("grpo", "sft")
) + sorted((ROOT / "configs" / "tiny").glob("*.yaml"))
TRAINING_RECIPES += [
    ROOT / "configs" / "demo" / "sft.yaml",
    ROOT / "configs" / "demo" / "grpo.yaml",
]
MEDR1_GRPO = sorted(p for p in (ROOT / "configs").glob("qwen*/grpo/*.yaml"))
MEDR1_SFT = ROOT / "configs" / "qwen2-vl-2b" / "sft" / "config_medr1.yaml"


def is_sft(recipe: Path) -> bool:
    return recipe.parent.name == "sft" or recipe.stem == "sft"


def parse(recipe: Path, *flags: str):
    import torch
    from trl import GRPOConfig, SFTConfig

    argv = ["--config", str(recipe), *flags]
    if "bf16: true" in recipe.read_text() and not torch.cuda.is_available():
        argv += ["--use_cpu", "true"]
    return parse_recipe(argv, SFTConfig if is_sft(recipe) else GRPOConfig, "test")


def label(path: Path) -> str:
    return str(path.relative_to(ROOT / "configs"))


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=label)
def test_no_full_fine_tuning_recipe_trains_bf16_master_weights(recipe):
    script_args, training_args, model_args = parse(recipe)
    dtype = model_init_kwargs(model_args, training_args)["dtype"]
    if full_fine_tuning(model_args):
        assert dtype == "float32", f"{label(recipe)} trains {dtype} master weights"
    else:  # LoRA / QLoRA: a frozen bf16 base is fine
        assert model_args.use_peft


def test_the_trainer_default_for_full_fine_tuning_is_float32():
    from trl import GRPOConfig, ModelConfig

    args = GRPOConfig(output_dir="runs/x", use_cpu=True, num_generations=2)
    for dtype in (None, "auto", "float32"):
        assert model_init_kwargs(ModelConfig(dtype=dtype), args)["dtype"] == "float32"
    lora = ModelConfig(dtype="bfloat16", use_peft=True)
    assert model_init_kwargs(lora, args)["dtype"] == "bfloat16"


@pytest.mark.parametrize("recipe", MEDR1_GRPO, ids=label)
@pytest.mark.parametrize("processes", [1, 2, 8])
def test_medr1_grpo_recipes_step_on_16_completions_on_1_2_or_8_processes(recipe, processes):
    script_args, args, _ = parse(recipe)
    steps = accumulation_steps(
        prompts=script_args.global_prompts_per_step,
        generations=args.num_generations,
        per_device=args.per_device_train_batch_size,
        processes=processes,
    )
    batch = StepBatch(args.per_device_train_batch_size, steps, processes, args.num_generations)
    assert (batch.prompts, batch.completions) == (4, 16)  # Med-R1: 4 prompts x 4 generations
    assert steps == {1: 8, 2: 4, 8: 1}[processes]


@pytest.mark.parametrize("recipe", MEDR1_GRPO, ids=label)
def test_grpo_recipes_sample_as_trl_0_14_did(recipe):
    script_args, args, _ = parse(recipe)
    # on this one-process host the parser derived the accumulation; TRL's generation batch follows
    assert (args.gradient_accumulation_steps, args.generation_batch_size) == (8, 16)
    assert (args.temperature, args.top_k, args.top_p, args.repetition_penalty) == (
        1.0,
        50,
        1.0,
        1.0,
    )
    text = recipe.read_text()
    assert "TRL 0.14 passed no top_k" in text.split("top_k: 50")[0].splitlines()[-2]  # the comment


def test_epochs_follow_med_r1s_scripts():
    epochs = {label(r): parse(r)[1].num_train_epochs for r in MEDR1_GRPO}
    assert epochs.pop("qwen2.5-vl-3b/grpo/config_no_thinking.yaml") == 2  # its README recipe
    two = {name for name, count in epochs.items() if count == 2}
    assert two == {f"qwen2-vl-2b/grpo/config_{m}_2ep.yaml" for m in ("thinking", "no_thinking")}
    assert {epochs[name] for name in set(epochs) - two} == {1}  # its Qwen2-VL DeepSpeed scripts


@pytest.mark.parametrize("mode", ["thinking", "no_thinking"])
def test_the_2_epoch_recipes_differ_from_their_base_only_in_epochs(mode):
    folder = ROOT / "configs" / "qwen2-vl-2b" / "grpo"
    base, variant = (parse(folder / f"config_{mode}{end}.yaml") for end in ("", "_2ep"))
    free = {
        "num_train_epochs",
        "output_dir",
        "logging_dir",
        "description",
        "run_name",
        "distributed_state",
    }  # (a runtime object, not a setting)
    for ours, theirs in zip(base, variant, strict=True):
        ours, theirs = vars(ours), vars(theirs)
        differ = {k for k in ours if k not in free and ours[k] != theirs.get(k)}
        assert not differ, differ
    assert (base[1].num_train_epochs, variant[1].num_train_epochs) == (1, 2)


def test_medr1_sft_recipe_matches_medr1s_sft():
    script_args, args, model_args = parse(MEDR1_SFT)
    assert (args.learning_rate, args.lr_scheduler_type.value, args.warmup_steps) == (
        2e-5,
        "cosine",
        0.1,
    )
    assert (script_args.sft_layout, args.completion_only_loss, args.bf16) == ("medr1", False, True)
    assert model_args.dtype == "float32"
    for processes, steps in ((1, 32), (2, 16), (8, 4)):  # Med-R1: 4 x GA 16 x 2 GPUs = 128
        assert (
            accumulation_steps(prompts=128, generations=1, per_device=4, processes=processes)
            == steps
        )
    assert script_args.global_prompts_per_step == 128 and args.per_device_train_batch_size == 4
    baseline = yaml.safe_load((MEDR1_SFT.parent / "config_no_thinking.yaml").read_text())
    assert (
        "project" in baseline["description"]
        and "Med-R1" in yaml.safe_load(MEDR1_SFT.read_text())["description"]
    )


def test_a_batch_the_processes_cannot_share_is_refused_in_plain_words(tmp_path, capsys):
    with pytest.raises(
        BatchError, match="with 8 processes use --per_device_train_batch_size 1 or 2"
    ):
        accumulation_steps(prompts=4, generations=4, per_device=4, processes=8)
    with pytest.raises(BatchError, match="3 processes cannot share 16 completions"):
        accumulation_steps(prompts=4, generations=4, per_device=2, processes=3)
    recipe = str(MEDR1_GRPO[0])
    assert (
        grpo.main(["--config", recipe, "--use_cpu", "true", "--gradient_accumulation_steps", "2"])
        == 2
    )
    assert "give one (--global_prompts_per_step 0" in capsys.readouterr().err
    assert (
        sft.main(
            ["--config", str(MEDR1_SFT), "--use_cpu", "true", "--per_device_train_batch_size", "3"]
        )
        == 2
    )
    assert "128 examples per step cannot be split" in capsys.readouterr().err
    # switched off, the recipe's own accumulation is used as given
    _, args, _ = parse(
        MEDR1_GRPO[0], "--global_prompts_per_step", "0", "--gradient_accumulation_steps", "2"
    )
    assert (args.gradient_accumulation_steps, args.generation_batch_size) == (2, 4)


@pytest.mark.parametrize(
    "config", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=label
)
def test_accelerate_configs_compute_in_bf16_and_defer_the_batch_to_the_recipe(config):
    settings = yaml.safe_load(config.read_text())
    assert settings["mixed_precision"] == "bf16"
    assert "gradient_accumulation_steps" not in str(settings.get("deepspeed_config", {}))
    assert "global_prompts_per_step" in config.read_text()  # the comment says how the batch is kept
