"""Training end to end on CPU with a tiny Qwen2-VL: recipes, SFT, GRPO, LoRA + merge, resume.

Run with `pytest tests/test_training.py -q`. Every run goes through `trainer.train.sft.train` /
`trainer.train.grpo.train` with arguments parsed from the tiny recipes, as `python -m trainer` does.

Why GRPO here starts from an SFT warm start: a randomly initialised model never writes an
`<answer>` tag, so Med-R1's rewards are all 0, every advantage is 0, the loss and its gradient are
0, and (the reference being the policy itself at step 0) the KL term adds nothing either. A short
SFT run (40 steps, ~3 s) teaches the answer format; sampling at temperature 1 then gives groups
whose rewards differ, and GRPO moves the weights with the real Med-R1 rewards.
"""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import TrainerCallback

from medr1_demo import protocol
from trainer.train import grpo, sft
from trainer.train.arguments import parse_recipe
from trainer.train.data import TRAINING_MODES
from trainer.train.rewards import resolve_rewards

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml") if "/grpo/" in str(p) or "/sft/" in str(p)
)
RECIPES += sorted((ROOT / "configs" / "tiny").glob("*.yaml"))
RECIPES += [ROOT / "configs" / "demo" / "sft.yaml", ROOT / "configs" / "demo" / "grpo.yaml"]
ACCELERATE = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
MEDR1_RECIPES = {
    "qwen2-vl-2b/grpo/config_thinking.yaml": protocol.THINKING,
    "qwen2-vl-2b/grpo/config_no_thinking.yaml": protocol.NO_THINKING,
}


def config_class(recipe: Path):
    from trl import GRPOConfig, SFTConfig

    return SFTConfig if "sft" in recipe.parts or recipe.stem == "sft" else GRPOConfig


def parse(recipe: Path, *flags: str):
    """Parse a recipe; GPU recipes (bf16) are parsed with --use_cpu so this CPU host accepts them."""
    import torch

    argv = ["--config", str(recipe), *flags]
    if "bf16: true" in recipe.read_text() and not torch.cuda.is_available():
        argv += ["--use_cpu", "true"]
    return parse_recipe(argv, config_class(recipe), "test")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_recipe_parses(recipe):
    script_args, training_args, model_args = parse(recipe)
    assert script_args.mode in TRAINING_MODES
    assert training_args.output_dir.startswith("runs/")
    if config_class(recipe).__name__ == "GRPOConfig":
        funcs = resolve_rewards(script_args.reward_funcs, script_args.mode)
        assert training_args.reward_weights is None or len(training_args.reward_weights) == len(
            funcs
        )
        # TRL 1.16 counts completions per batch: a generation batch must hold whole groups.
        assert training_args.generation_batch_size % training_args.num_generations == 0


@pytest.mark.parametrize(("name", "mode"), MEDR1_RECIPES.items())
def test_medr1_recipes_keep_the_paper_settings(name, mode):
    script_args, a, model_args = parse(ROOT / "configs" / name)
    settings = (a.beta, a.loss_type, a.scale_rewards, a.num_generations, a.max_completion_length)
    assert settings == (0.04, "grpo", "group", 4, 256)
    assert (a.temperature, a.learning_rate, a.num_iterations, a.bf16) == (1.0, 1e-6, 1, True)
    assert (script_args.image_size, script_args.max_pixels) == (384, 401408)
    assert model_args.model_name_or_path == "Qwen/Qwen2-VL-2B-Instruct"
    assert script_args.mode == mode


def test_variant_recipes_say_what_they_are():
    lora = parse(ROOT / "configs/qwen2-vl-2b/grpo/config_lora.yaml")[2]
    qlora = parse(ROOT / "configs/qwen2-vl-2b/grpo/config_qlora.yaml")[2]
    vllm = parse(ROOT / "configs/qwen2-vl-2b/grpo/config_vllm.yaml")[1]
    assert lora.use_peft and not lora.load_in_4bit
    assert qlora.use_peft and qlora.load_in_4bit and qlora.bnb_4bit_quant_type == "nf4"
    assert vllm.use_vllm and vllm.vllm_mode == "colocate"
    qwen25 = parse(ROOT / "configs/qwen2.5-vl-3b/grpo/config_no_thinking.yaml")
    assert (
        qwen25[2].model_name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct"
        and qwen25[0].mode == protocol.NO_THINKING
    )


@pytest.mark.parametrize("config", ACCELERATE, ids=lambda p: p.stem)
def test_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import ClusterConfig

    cluster = ClusterConfig.from_yaml_file(str(config))
    assert cluster.distributed_type.value == ("MULTI_GPU" if config.stem == "ddp" else "DEEPSPEED")
    if config.stem != "ddp":
        assert cluster.deepspeed_config["zero_stage"] == int(config.stem[-1])


# ------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """A few synthetic phantom questions in Med-R1 split format, with rationales."""
    from trainer.phantoms.synth import write_dataset

    out = tmp_path_factory.mktemp("phantoms")
    write_dataset(out, 12, seed=0, image_size=64, dicom=False, progress=False)
    return out / "train.json"


def tiny_run(kind: str, model: Path, data: Path, out: Path, *flags: str):
    """Parse the tiny recipe with overrides, as `python -m trainer <kind>` would."""
    module = grpo if kind == "grpo" else sft
    recipe = ROOT / "configs" / "tiny" / f"{kind}.yaml"
    argv = ["--config", str(recipe), "--model_name_or_path", str(model), "--data_files", str(data)]
    argv += ["--output_dir", str(out), *flags]
    return module, parse_recipe(argv, config_class(recipe), "test"), str(recipe)


def train(kind: str, model: Path, data: Path, out: Path, *flags: str, callbacks=None):
    module, (script_args, training_args, model_args), recipe = tiny_run(
        kind, model, data, out, *flags
    )
    return module.train(script_args, training_args, model_args, recipe=recipe, callbacks=callbacks)


def weights(folder: Path, name: str = "model.safetensors") -> dict:
    return load_file(str(folder / name))


def changed(before: dict, after: dict) -> list[str]:
    return [k for k in before if k in after and not before[k].equal(after[k])]


def served_by_engine(folder: Path, data: Path, adapter: Path | None = None):
    """Load the checkpoint as the app does, answer one phantom question in both modes; its info."""
    from medr1_demo.policy.engine import PolicyEngine
    from medr1_demo.scan.reader import load_scan

    record = json.loads(data.read_text())[0]
    question, options = protocol.split_question(record["problem"])
    engine = PolicyEngine.load(str(folder), adapter=str(adapter) if adapter else None, device="cpu")
    image = load_scan(data.parent / record["image"]).image
    answers = engine.answer(image, question, options)
    assert set(answers) == set(protocol.MODES)
    assert all(a.done and a.tokens > 0 for a in answers.values())
    return engine.info


@pytest.fixture(scope="module")
def warm_start(tiny_checkpoint, phantoms, tmp_path_factory):
    """SFT warm start: teaches the tiny model the `<answer>X</answer>` format."""
    out = tmp_path_factory.mktemp("sft")
    trainer = train(
        "sft", tiny_checkpoint, phantoms, out,
        "--max_steps", "40", "--learning_rate", "5e-3", "--save_strategy", "no", "--logging_steps", "10",
    )  # fmt: skip
    return out, trainer


def test_sft_learns_the_answer_format_and_saves_a_servable_checkpoint(
    warm_start, tiny_checkpoint, phantoms
):
    out, trainer = warm_start
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < losses[0] / 2
    assert changed(weights(tiny_checkpoint), weights(out))
    metadata = json.loads((out / "medr1_policy.json").read_text())
    assert metadata["method"] == "sft" and metadata["mode"] == protocol.NO_THINKING
    assert metadata["data"]["train_records"] == len(json.loads(phantoms.read_text()))
    for name in (
        "chat_template.jinja",
        "tokenizer.json",
        "processor_config.json",
        "training_curves.csv",
    ):
        assert (out / name).exists(), name
    assert served_by_engine(out, phantoms).trained_mode == protocol.NO_THINKING


def test_grpo_moves_the_weights_and_the_engine_serves_the_result(warm_start, phantoms, tmp_path):
    start = warm_start[0]
    out = tmp_path / "grpo"
    trainer = train("grpo", start, phantoms, out, "--max_steps", "3", "--save_strategy", "no")
    steps = [e for e in trainer.state.log_history if "reward_std" in e]
    assert any(e["reward_std"] > 0 and e["grad_norm"] > 0 for e in steps), steps
    assert changed(weights(start), weights(out))
    metadata = json.loads((out / "medr1_policy.json").read_text())
    assert (metadata["method"], metadata["mode"], metadata["base_model"]) == (
        "grpo", protocol.NO_THINKING, str(start),
    )  # fmt: skip
    assert metadata["settings"]["training"]["beta"] == 0.04
    assert metadata["recipe"].endswith("configs/tiny/grpo.yaml")
    assert "rewards/accuracy_reward/mean" in metadata["metrics"]
    header = (out / "training_curves.csv").read_text().splitlines()[0].split(",")
    for column in (
        "reward",
        "rewards/accuracy_reward/mean",
        "rewards/format_no_thinking_reward/mean",
        "kl",
        "completions/mean_length",
    ):
        assert column in header, column
    assert (out / "training_curves.png").stat().st_size > 5000
    assert served_by_engine(out, phantoms).trained_mode == protocol.NO_THINKING


def test_lora_grpo_saves_an_adapter_that_merges_into_full_weights(warm_start, phantoms, tmp_path):
    from trainer.train import merge

    start = warm_start[0]
    out = tmp_path / "lora"
    train(
        "grpo", start, phantoms, out, "--max_steps", "3", "--save_strategy", "no",
        "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj", "v_proj",
        "--learning_rate", "5e-2",
    )  # fmt: skip
    assert not (out / "model.safetensors").exists()
    adapter = weights(out, "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in adapter.items())
    assert json.loads((out / "medr1_policy.json").read_text())["adapter"] is True

    merged = tmp_path / "merged"
    assert merge.main(["--adapter", str(out), "--out", str(merged)]) == 0
    assert changed(weights(start), weights(merged))
    metadata = json.loads((merged / "medr1_policy.json").read_text())
    assert metadata["adapter"] is False and metadata["merged_from"] == str(out)
    assert served_by_engine(merged, phantoms).trained_mode == protocol.NO_THINKING
    assert served_by_engine(start, phantoms, adapter=out).adapter == str(out)
    assert merge.main(["--adapter", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2


class StepLog(TrainerCallback):
    """Which optimizer steps this run actually took."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_a_stopped_run_resumes_from_its_last_save(tiny_checkpoint, phantoms, tmp_path):
    out = tmp_path / "resumable"
    first = StepLog()
    train(
        "grpo",
        tiny_checkpoint,
        phantoms,
        out,
        "--max_steps",
        "2",
        "--save_steps",
        "2",
        callbacks=[first],
    )
    assert first.steps == [1, 2] and (out / "checkpoint-2").is_dir()
    assert (
        json.loads((out / "checkpoint-2" / "medr1_policy.json").read_text())["metrics"][
            "global_step"
        ]
        == 2
    )

    second = StepLog()
    train(
        "grpo", tiny_checkpoint, phantoms, out, "--max_steps", "4", "--save_steps", "2",
        "--resume_from_checkpoint", "true", callbacks=[second],
    )  # fmt: skip
    assert second.steps == [3, 4]  # continued from step 2, not from the start
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_checkpoint, phantoms, tmp_path, capsys):
    _, parsed, recipe = tiny_run(
        "grpo", tiny_checkpoint, phantoms, tmp_path / "empty", "--resume_from_checkpoint", "true"
    )
    assert grpo.run(grpo.train, parsed, recipe) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_a_missing_model_is_a_clear_error(phantoms, tmp_path, capsys):
    _, parsed, recipe = tiny_run("sft", tmp_path / "no-model", phantoms, tmp_path / "out")
    assert grpo.run(sft.train, parsed, recipe, sft=True) == 2
    assert "No model at" in capsys.readouterr().err


# ----------------------------------------------------------------- precision and Med-R1's SFT


@pytest.fixture(scope="module")
def bf16_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint stored in bfloat16, as Qwen2-VL-2B-Instruct is on the hub."""
    import shutil

    import torch
    from transformers import Qwen2VLForConditionalGeneration

    out = tmp_path_factory.mktemp("bf16") / "policy"
    shutil.copytree(tiny_checkpoint, out)
    model = Qwen2VLForConditionalGeneration.from_pretrained(out, dtype=torch.bfloat16)
    model.save_pretrained(out)
    return out


def share_moved(before: dict, after: dict) -> float:
    """Share of the language model's projection weights a step changed (each gets a gradient)."""
    names = [k for k in before if k.startswith("model.layers.") and k.endswith("proj.weight")]
    assert names
    moved = sum(int((before[k].float() != after[k].float()).sum()) for k in names)
    return moved / sum(before[k].numel() for k in names)


def test_a_1e6_adam_step_moves_fp32_master_weights(bf16_checkpoint, phantoms, tmp_path, capsys):
    """Med-R1's learning rate moves float32 master weights; in bf16 weights it rounds away."""
    flags = ("--max_steps", "1", "--learning_rate", "1e-6", "--lr_scheduler_type", "constant")
    flags += ("--bf16", "true", "--save_strategy", "no", "--plots", "false")
    before = weights(bf16_checkpoint)
    # `auto` would load the checkpoint's bf16: full fine-tuning loads float32 masters instead
    train("sft", bf16_checkpoint, phantoms, tmp_path / "fp32", *flags, "--dtype", "auto")
    printed = capsys.readouterr()
    assert "precision float32 master weights, bf16 compute (autocast)" in printed.out
    assert "global batch 4 examples per optimizer step (4 per device x 1" in printed.out
    fp32 = weights(tmp_path / "fp32")
    assert next(iter(fp32.values())).dtype.is_floating_point
    assert share_moved(before, fp32) > 0.95, share_moved(before, fp32)

    train("sft", bf16_checkpoint, phantoms, tmp_path / "bf16", *flags, "--dtype", "bfloat16")
    assert "warning: full fine-tuning with bfloat16 master weights" in capsys.readouterr().err
    assert share_moved(before, weights(tmp_path / "bf16")) < 0.1
    metadata = json.loads((tmp_path / "fp32" / "medr1_policy.json").read_text())
    assert metadata["precision"].startswith("float32 master weights")
    assert metadata["global_batch"]["completions"] == 4


def test_medr1_sft_layout_asks_as_medr1_and_trains_on_the_whole_sequence(
    tiny_checkpoint, phantoms, tmp_path
):
    from medr1_demo.batch.sources import read_records
    from trainer.train.data import build_dataset

    records = read_records([str(phantoms)], None)[0][:2]
    plain, thinking = (
        build_dataset(records, mode, 56, sft=True, layout="medr1")[0]
        for mode in (protocol.NO_THINKING, protocol.THINKING)
    )
    system, user = plain["prompt"]
    assert system["content"][0]["text"] == protocol.MEDR1_SFT_SYSTEM_PROMPT
    assert [part["type"] for part in user["content"]] == ["text", "image"]  # text first
    assert user["content"][0]["text"] == records[0].question  # the bare question, no task text
    assert plain["completion"][0]["content"] == records[0].solution  # "<answer> X </answer>"
    assert (
        thinking["completion"][0]["content"] == f"{records[0].rationale}\n\n{records[0].solution}"
    )

    trainer = train(
        "sft", tiny_checkpoint, phantoms, tmp_path / "medr1", "--max_steps", "1",
        "--sft_layout", "medr1", "--completion_only_loss", "false", "--save_strategy", "no",
    )  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    image_id = trainer.processing_class.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    labels, ids = batch["labels"], batch["input_ids"]
    assert (ids == image_id).any() and not (labels[ids == image_id] != -100).any()
    kept = labels[(labels != -100)]
    tokenizer = trainer.processing_class.tokenizer
    text = tokenizer.decode(kept[: len(kept) // 2])
    assert "Your task: Provide" in text  # the system prompt is in the loss
    assert (
        json.loads((tmp_path / "medr1" / "medr1_policy.json").read_text())["settings"]["script"][
            "sft_layout"
        ]
        == "medr1"
    )


def test_rgba_pictures_go_onto_white_as_the_official_loader_does(tmp_path):
    from PIL import Image

    from medr1_demo.scan.reader import load_scan
    from trainer.train.data import open_image

    picture = Image.new("RGBA", (32, 32), (0, 0, 0, 0))  # transparent margin
    picture.paste((200, 30, 30, 255), (8, 8, 24, 24))  # an opaque red square
    picture.putpixel((0, 31), (0, 0, 255, 128))  # half-transparent blue
    path = tmp_path / "rgba.png"
    picture.save(path)
    image = open_image(str(path), 0)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)  # qwen_vl_utils: RGBA pasted onto white
    assert image.getpixel((16, 16)) == (200, 30, 30)
    assert image.getpixel((0, 31)) == (127, 127, 255)  # blended with white, not black
    # The app's reader gives the same picture, so the app asks what training saw.
    assert load_scan(path).image.tobytes() == image.tobytes()
    grey = tmp_path / "la.png"
    Image.new("LA", (8, 8), (90, 0)).save(grey)
    assert open_image(str(grey), 0).getpixel((0, 0)) == (90, 90, 90)  # convert("RGB") drops alpha
