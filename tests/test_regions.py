"""The phantom generator records where each finding was drawn (`trainer.phantoms.regions`)."""

import json

import numpy as np
import pytest
from PIL import Image

from medr1_demo.batch.sources import read_records
from trainer.phantoms import regions, synth
from trainer.phantoms.questions import compose
from trainer.phantoms.render import render


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    synth.write_dataset(out, n=80, seed=3, image_size=64, progress=False)
    records = json.loads((out / "train.json").read_text()) + json.loads(
        (out / "test.json").read_text()
    )
    return out, records


def test_every_item_with_a_finding_records_its_region(dataset):
    out, records = dataset
    with_finding = [r for r in records if "regions" in r]
    assert len(with_finding) > 20
    kinds = {r["regions"]["finding"] for r in with_finding}
    assert {"hemorrhage", "effusion", "pneumonia", "nevus"} & kinds
    for record in with_finding:
        found = record["regions"]
        assert found["boxes"] and 0 < found["area"] <= 1
        for x0, y0, x1, y1 in found["boxes"]:
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        # The side files beside the PNG (and DICOM) say the same.
        base = out / record["image"].removesuffix(".png")
        side = json.loads(base.with_name(base.name + regions.REGIONS_SUFFIX).read_text())
        assert side == found
        mask = np.asarray(Image.open(out / found["mask"])) > 0
        assert mask.shape == (64, 64) and abs(mask.mean() - found["area"]) < 1e-3
        # Every box holds some of the mask, and the mask lies inside the boxes.
        boxed = regions.region_mask({"boxes": found["boxes"]}, (64, 64))
        assert (mask & ~boxed).sum() == 0
        assert np.array_equal(regions.region_mask(found, (64, 64), out), mask)
    without = [r for r in records if "regions" not in r]
    assert without and not any(
        (out / r["image"].replace(".png", regions.MASK_SUFFIX)).exists() for r in without
    )


def test_split_loaders_ignore_the_extra_field(dataset):
    out, _ = dataset
    records, problems, _ = read_records([str(out / "test.json")])
    assert records and not problems


def test_a_lateral_finding_is_boxed_on_its_side():
    """A CT haemorrhage on the patient's left lies on the image right (radiological view)."""
    checked = 0
    for side, image_half in (("left", "right"), ("right", "left")):
        for index in range(12):
            item = compose(index, "CT", "Disease Diagnosis", 1, np.random.default_rng(index))
            scene = item.scene.__class__(**{**item.scene.__dict__, "side": side})
            phantom = render(scene, np.random.default_rng(index), 64)
            found = regions.describe(phantom, scene.finding)
            if found is None or scene.anatomy != "head":
                continue
            x0, _, x1, _ = found["boxes"][0]
            centre = (x0 + x1) / 2
            assert centre > 0.5 if image_half == "right" else centre < 0.5
            checked += 1
    assert checked >= 2


def test_the_gallery_carries_regions():
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "assets" / "examples"
    entries = json.loads((folder / "examples.json").read_text())
    mapped = [e for e in entries if "regions" in e]
    assert len(mapped) >= 8
    for entry in mapped:
        assert (folder / entry["regions"]["mask"]).is_file()
