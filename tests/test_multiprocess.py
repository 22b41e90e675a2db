"""Two-process data-parallel GRPO on CPU (gloo), launched as users launch it on GPUs.

Run with `pytest tests/test_multiprocess.py -q` (~30 s: two Python processes import TRL). This is
`accelerate launch --multi_gpu --num_processes 2 -m trainer grpo ...` with the tiny recipe
(`use_cpu: true`): `--multi_gpu` is accelerate's torchrun launcher, and on a host without GPUs
the two processes join over gloo. (`accelerate launch --cpu --num_processes 2` would start one
process unless MPI is set up.) It checks that the run completes with both ranks in one batch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_grpo_completes(tiny_checkpoint, tmp_path):
    from trainer.phantoms.synth import write_dataset

    data = tmp_path / "phantoms"
    write_dataset(data, 10, seed=1, image_size=64, dicom=False, progress=False)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "trainer", "grpo", "--config", "configs/tiny/grpo.yaml",
        "--model_name_or_path", str(tiny_checkpoint), "--data_files", str(data / "train.json"),
        "--output_dir", str(out), "--max_steps", "2", "--save_strategy", "no",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # Each logged step gathers the rewards of both ranks: 2 ranks x 4 completions.
    metadata = json.loads((out / "medr1_policy.json").read_text())
    assert metadata["settings"]["training"]["generation_batch_size"] == 8
    assert (out / "model.safetensors").exists() and (out / "training_curves.csv").exists()
