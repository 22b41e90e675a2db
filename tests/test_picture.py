"""One picture, as trained: the app and `trainer eval` hand the policy the same pixels.

Run: `.venv/bin/python -m pytest tests/test_picture.py -q`.
"""

import json
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from medr1_demo.batch import runner
from medr1_demo.batch.sources import Record
from medr1_demo.policy.engine import PolicyEngine
from medr1_demo.policy.picture import MEDR1_RELEASE_SIZE, as_trained, training_size
from medr1_demo.protocol import NO_THINKING, build_prompt, format_question, make_solution
from medr1_demo.web.handlers import Backend, Handlers
from trainer.eval import evaluate

ROOT = Path(__file__).resolve().parents[1]


def big_ct(path: Path) -> Path:
    """pydicom's CT slice upsampled to 512 x 512, the size of a usual CT."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds.PixelData = np.kron(ds.pixel_array, np.ones((4, 4), dtype=ds.pixel_array.dtype)).tobytes()
    ds.Rows = ds.Columns = 512
    ds.save_as(path)
    return path


def test_the_size_comes_from_the_policy_metadata_and_the_release():
    assert training_size({"model": {"image_size": 112}}) == 112  # the demo build
    assert training_size({"settings": {"script": {"image_size": 224}}}) == 224  # a trainer run
    assert training_size({}, "yuxianglai117/Med-R1") == MEDR1_RELEASE_SIZE
    assert training_size({}, "some/other-model") is None  # the processor's limits decide


def test_app_and_trainer_eval_give_the_same_model_input(tiny_checkpoint, tmp_path):
    policy = tmp_path / "policy"
    policy.mkdir()
    for file in Path(tiny_checkpoint).iterdir():
        (policy / file.name).write_bytes(file.read_bytes())
    (policy / "medr1_policy.json").write_text(json.dumps({"image_size": 64}), encoding="utf-8")
    engine = PolicyEngine.load(str(policy), device="cpu")
    assert engine.info.image_size == 64
    scan = big_ct(tmp_path / "ct.dcm")
    question, options = "Which modality?", ["CT", "MRI"]
    prompt = build_prompt(format_question(question, options), NO_THINKING)

    handlers = Handlers(Backend(engine.info, engine.answer, engine.stream))
    request = handlers.check_request(str(scan), question, options, [NO_THINKING])
    assert request.image.size == (64, 64) and request.scan["source_width"] == 512
    preview = handlers.new_scan(str(scan))[0]
    assert "Model input: 64 × 64 px" in preview  # the preview is exactly that picture

    record = Record("ct.json", 0, str(scan), format_question(question, options),
                    make_solution("A"), 2, "CT", "Modality Recognition")  # fmt: skip
    item = evaluate.Item("ct:0", "ct", record)
    (from_eval,) = runner.load_images([evaluate.Row(item, NO_THINKING, prompt)])  # as eval reads
    app = engine.model_inputs([request.image], [prompt])
    ours = engine.model_inputs([from_eval], [prompt])
    assert (app["pixel_values"] == ours["pixel_values"]).all()
    assert (app["image_grid_thw"] == ours["image_grid_thw"]).all()


def test_as_trained_is_the_training_resize():
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 200, 3), np.uint8))
    resized = as_trained(image, 112)
    assert resized.size == (112, 112)
    expected = image.resize((112, 112), Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(resized), np.asarray(expected))
    assert as_trained(image, None).size == (200, 300)


def test_auto_precision_keeps_bf16_weights_in_bf16_on_cpus_that_compute_it(tmp_path):
    import torch

    from medr1_demo.policy import checkpoint

    flags = "flags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16\n"
    assert checkpoint.cpu_has_native_bf16(flags)
    assert not checkpoint.cpu_has_native_bf16("flags\t\t: fpu sse avx2\n")
    assert checkpoint.cpu_has_native_bf16("Features\t: fp asimd bf16 i8mm\n")  # ARM
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "bfloat16"}), encoding="utf-8")
    assert checkpoint.stored_dtype(tmp_path) == "bfloat16"
    native = checkpoint.cpu_has_native_bf16()
    assert checkpoint.pick_dtype("auto", "cpu", "bfloat16") == (
        torch.bfloat16 if native else torch.float32
    )
    assert checkpoint.pick_dtype("auto", "cpu", "float32") == torch.float32  # never downcast
