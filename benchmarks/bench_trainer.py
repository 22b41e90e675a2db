"""Seconds per GRPO step: `python -m trainer grpo`'s path against a minimal stock TRL GRPOTrainer script.

    .venv/bin/python benchmarks/bench_trainer.py [--steps 20] [--repeats 3]

Both sides train the same tiny Qwen2-VL on the same synthetic phantoms with the same settings
(configs/tiny/grpo.yaml: 4 generations, 16 tokens, beta 0.04, loss grpo, 56x56 images), each in
a fresh process, alternating. Ours parses the recipe, validates the data and calls
`trainer.train.grpo.train`, exactly what `python -m trainer grpo` does. The stock side is what a TRL user
writes by hand: records read with `json`, images decoded into a `datasets.Dataset`, two inline
reward functions, a `GRPOConfig` with the same values. Only the processor is shared
(`load_processor`): stock `AutoProcessor` cannot be built here without torchvision.

The same `StepClock` callback measures both: the time between consecutive optimizer steps (data
loading, generation, rewards, update), first step excluded (warm-up), median per run, then the
median over runs. Process CPU time is the primary figure because it hardly moves when other jobs
share the cores; wall time is printed beside it. Target: ours/stock <= 1.05.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "tiny" / "grpo.yaml"


class StepClock(TrainerCallback):
    """CPU and wall seconds between consecutive optimizer steps."""

    def __init__(self):
        self.marks = []

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append((time.process_time(), time.perf_counter()))

    def per_step(self) -> dict:
        cpu = [b[0] - a[0] for a, b in zip(self.marks, self.marks[1:], strict=False)]
        wall = [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return {"cpu": statistics.median(cpu), "wall": statistics.median(wall)}


def ours(model: str, data: str, out: str, steps: int) -> dict:
    from trl import GRPOConfig

    from trainer.train import grpo
    from trainer.train.arguments import parse_recipe

    argv = ["--config", str(RECIPE), "--model_name_or_path", model, "--data_files", data]
    argv += [
        "--output_dir",
        out,
        "--max_steps",
        str(steps),
        "--save_strategy",
        "no",
        "--plots",
        "false",
    ]
    script_args, training_args, model_args = parse_recipe(argv, GRPOConfig, "bench")
    clock = StepClock()
    grpo.train(script_args, training_args, model_args, recipe=str(RECIPE), callbacks=[clock])
    return clock.per_step()


def stock(model: str, data: str, out: str, steps: int) -> dict:
    """A hand-written GRPO script on stock TRL, as a user would write it (same settings as ours)."""
    import re

    import datasets
    from PIL import Image
    from trl import GRPOConfig, GRPOTrainer

    from medr1_demo.policy.checkpoint import load_processor

    template = (
        "{} Your task: 1. Provide the correct single-letter choice (A, B, C, D,...) inside "
        "<answer>...</answer> tags. 2. No extra information or text outside of this tag."
    )
    records = json.loads(Path(data).read_text())
    rows = []
    for r in records:
        text = {"type": "text", "text": template.format(r["problem"])}
        image = Image.open(Path(data).parent / r["image"]).convert("RGB").resize((56, 56))
        prompt = [{"role": "user", "content": [{"type": "image"}, text]}]
        rows.append({"prompt": prompt, "image": image, "solution": r["solution"]})

    def first_answer(text):
        match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
        return (match.group(1) if match else text).strip()

    def accuracy(completions, solution, **kwargs):
        return [
            float(first_answer(c[0]["content"]) == first_answer(s))
            for c, s in zip(completions, solution, strict=True)
        ]

    def answer_format(completions, **kwargs):
        pattern = re.compile(r"\s*<answer>.*?</answer>", re.DOTALL)
        return [float(pattern.fullmatch(c[0]["content"]) is not None) for c in completions]

    args = GRPOConfig(
        output_dir=out, beta=0.04, loss_type="grpo", scale_rewards="group", num_generations=4,
        max_completion_length=16, temperature=1.0, learning_rate=1e-3, reward_weights=[1.0, 1.0],
        per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=steps,
        use_cpu=True, bf16=False, activation_checkpointing=False, dataloader_num_workers=0, seed=0,
        logging_steps=1, save_strategy="no", report_to="none",
    )  # fmt: skip
    clock = StepClock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[accuracy, answer_format],
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=load_processor(model),
        callbacks=[clock],
    )
    trainer.train()
    return clock.per_step()


SIDES = {"ours": ours, "stock": stock}


def run_side(side: str, model: Path, data: Path, out: Path, steps: int) -> dict:
    """One side in a fresh process; its per-step figures."""
    result = out.with_suffix(".json")
    command = [
        sys.executable,
        __file__,
        "--side",
        side,
        str(model),
        str(data),
        str(out),
        str(steps),
        str(result),
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return json.loads(result.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from medr1_demo.policy.tiny import build_tiny_checkpoint
    from trainer.phantoms.synth import write_dataset

    runs = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_checkpoint(work / "tiny", seed=0)
        write_dataset(work / "data", 32, seed=0, dicom=False, progress=False)
        data = work / "data" / "train.json"
        for repeat in range(args.repeats):  # alternate, so drift in machine load hits both
            for side in SIDES:
                runs[side].append(run_side(side, model, data, work / f"{side}{repeat}", args.steps))
    print(
        f"{args.steps} steps a run, {args.repeats} runs a side, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )
    print("seconds per step (median of runs)     CPU       wall   (CPU per run)")
    medians = {}
    for side, label in (("ours", "python -m trainer grpo"), ("stock", "stock TRL GRPOTrainer")):
        medians[side] = {k: statistics.median(r[k] for r in runs[side]) for k in ("cpu", "wall")}
        per_run = " ".join(f"{r['cpu']:.4f}" for r in runs[side])
        print(
            f"  {label:<28} {medians[side]['cpu']:8.4f} {medians[side]['wall']:8.4f}   ({per_run})"
        )
    for key in ("cpu", "wall"):
        print(
            f"ratio ours/stock, {key:<4}: {medians['ours'][key] / medians['stock'][key]:.3f} (target <= 1.05)"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere
    if len(sys.argv) == 8 and sys.argv[1] == "--side":
        side, model, data, out, steps, result = sys.argv[2:]
        Path(result).write_text(json.dumps(SIDES[side](model, data, out, int(steps))))
    else:
        raise SystemExit(main())
