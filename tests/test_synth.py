"""Tests of the phantom data generator (`python -m trainer synth`) and its DICOM files.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_synth.py -q` (about 10 s, CPU only).
"""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut
from pydicom.uid import EnhancedCTImageStorage

from medr1_demo.protocol import LETTERS, format_question, make_solution
from medr1_demo.scan.reader import load_scan
from trainer.phantoms import dicom_export, synth
from trainer.phantoms.kinds import MODALITIES, MODALITY_RECOGNITION, QUESTION_TYPES

N, SEED, SIZE = 48, 7, 64
PYDICOM_ROOT, STANDARD_ROOT = "1.2.826.0.1.3680043.8.498.", "1.2.840.10008."


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    synth.write_dataset(out, N, SEED, image_size=SIZE, progress=False)
    return out


def records(root: Path) -> list[dict]:
    return json.loads((root / "train.json").read_text()) + json.loads(
        (root / "test.json").read_text()
    )


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def dicoms(root: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(root.rglob("*.dcm"))]


def test_same_seed_gives_identical_files_and_another_seed_does_not(dataset, tmp_path):
    synth.write_dataset(tmp_path / "again", N, SEED, image_size=SIZE, progress=False)
    synth.write_dataset(tmp_path / "other", N, SEED + 1, image_size=SIZE, progress=False)
    first, again, other = files(dataset), files(tmp_path / "again"), files(tmp_path / "other")
    assert first == again
    assert first["train.json"] != other["train.json"]
    pngs = [name for name in first if name.endswith(".png") and name in other]
    assert sum(first[name] != other[name] for name in pngs) > len(pngs) // 2


def test_every_modality_and_question_type_with_valid_options(dataset):
    recs = records(dataset)
    assert len(recs) == N
    assert {r["modality"] for r in recs} == set(MODALITIES)
    assert {r["question_type"] for r in recs} == set(QUESTION_TYPES)
    assert {len(r["options"]) for r in recs} == {2, 3, 4}
    for r in recs:
        assert 2 <= len(r["options"]) <= 4
        assert r["answer"] in LETTERS[: len(r["options"])]
        assert r["solution"] == make_solution(r["answer"])
        assert r["problem"] == format_question(r["question"], r["options"])
        assert r["rationale"].strip() and (dataset / r["image"]).is_file()
        assert ("dicom" in r) == (r["modality"] in dicom_export.DICOM_MODALITIES)
        # Modality recognition options are modality names and the answer is the image's own.
        if r["question_type"] == MODALITY_RECOGNITION:
            assert set(r["options"]) <= set(MODALITIES)
            assert r["options"][LETTERS.index(r["answer"])] == r["modality"]


def test_split_files_partition_the_records(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert sum(sum(row.values()) for row in manifest["counts"].values()) == N
    for split in ("train", "test"):
        ids = {r["id"] for r in json.loads((dataset / f"{split}.json").read_text())}
        for key, values in (
            ("modality", MODALITIES),
            ("question_type", QUESTION_TYPES),
        ):
            parts = [dataset / "Splits" / key / split / f"{v}_{split}.json" for v in values]
            found = [r["id"] for p in parts for r in json.loads(p.read_text())]
            assert sorted(found) == sorted(ids)
    assert 0 < manifest["splits"]["test"] < N


def test_images_decode_at_the_requested_size(dataset):
    for r in records(dataset):
        with Image.open(dataset / r["image"]) as im:
            im.load()
            assert im.size == (SIZE, SIZE) and im.mode in ("L", "RGB")


def test_ct_dicom_gives_plausible_hounsfield_units(dataset):
    cts = [ds for ds in dicoms(dataset) if ds.Modality == "CT"]
    assert cts
    for ds in cts:
        hu = apply_modality_lut(ds.pixel_array, ds)
        assert ds.RescaleIntercept == -1024 and ds.RescaleSlope == 1
        assert "WindowCenter" in ds and "WindowWidth" in ds
        assert np.mean(np.abs(hu + 1000) < 60) > 0.2  # air and the padding around the body
        assert np.mean((hu >= 0) & (hu <= 80)) > 0.05  # soft tissue, brain, muscle
        assert np.mean(hu > 300) > 0.002  # bone: skull, ribs or spine


def test_png_is_the_windowed_dicom(dataset):
    by_dicom = {r["dicom"]: r["image"] for r in records(dataset) if "dicom" in r}
    for name, png in by_dicom.items():
        ds = pydicom.dcmread(dataset / name)
        stored = ds.pixel_array
        if int(ds.get("NumberOfFrames", 1)) > 1:
            stored = stored[stored.shape[0] // 2]
        if ds.PhotometricInterpretation == "MONOCHROME1":
            stored = 4095 - stored
        window = (float(ds.WindowCenter), float(ds.WindowWidth)) if ds.Modality == "CT" else None
        shown = dicom_export.display_values(
            MODALITIES[0] if ds.Modality == "CT" else "", stored, window
        )
        picture = np.asarray(Image.open(dataset / png))
        assert np.array_equal(shown, picture), name


def test_monochrome1_xray_and_multiframe_ct_are_written(dataset):
    sets = dicoms(dataset)
    mono1 = [ds for ds in sets if ds.PhotometricInterpretation == "MONOCHROME1"]
    assert mono1 and all(ds.Modality == "DX" for ds in mono1)
    multi = [ds for ds in sets if int(ds.get("NumberOfFrames", 1)) > 1]
    assert multi and all(ds.SOPClassUID == EnhancedCTImageStorage for ds in multi)
    frames = multi[0].pixel_array
    assert frames.shape[0] == synth.CT_FRAMES
    assert any(not np.array_equal(frames[0], frame) for frame in frames[1:])
    mri = [ds for ds in sets if ds.Modality == "MR"]
    assert mri and all(ds.BitsStored == 12 and ds.PixelRepresentation == 0 for ds in mri)
    assert {ds.PhotometricInterpretation for ds in sets if ds.Modality == "US"} == {
        "RGB",
        "MONOCHROME2",
    }


def test_no_dicom_tag_holds_an_identifier(dataset):
    for ds in dicoms(dataset):
        assert ds.PatientName == "PHANTOM^DEMO" and ds.PatientID == "PHANTOM-0001"
        assert "InstitutionName" not in ds and ds.BurnedInAnnotation == "NO"
        for element in ds.iterall():
            values = element.value if element.VM > 1 else [element.value]
            for value in values:
                text = str(value)
                if element.VR == "DA":
                    assert text in ("", dicom_export.SYNTHETIC_DATE)
                elif element.VR == "PN":
                    assert text in ("", "PHANTOM^DEMO")
                elif element.VR == "UI":
                    assert text.startswith((PYDICOM_ROOT, STANDARD_ROOT)), element.keyword


def test_answers_are_balanced():
    """Canonical order: every kind deals its answers evenly (a k-option kind: about 1/k each)."""
    items = synth.plan(2000, SEED)
    for kind in {(it.modality, it.question_type) for it in items}:
        if kind[1] == MODALITY_RECOGNITION:
            continue  # the letter is the modality's fixed place in its panel
        chosen = [it for it in items if (it.modality, it.question_type) == kind]
        letters = Counter(it.answer for it in chosen)
        assert len(letters) == len(chosen[0].options)
        assert max(letters.values()) / len(chosen) <= 1 / len(letters) + 0.03, (kind, letters)
    for question_type in QUESTION_TYPES:
        letters = Counter(it.answer for it in items if it.question_type == question_type)
        assert max(letters.values()) / sum(letters.values()) <= 0.42, (question_type, letters)


def test_shuffled_options_stay_balanced_and_vary():
    """Shuffled: the answer sits at each shown position equally often (within sampling noise)."""
    items = synth.plan(2000, SEED, shuffle_options=True)
    assert {len(it.options) for it in items} == {2, 3, 4}
    for question_type in QUESTION_TYPES:
        chosen = [it for it in items if it.question_type == question_type]
        observed = Counter(it.answer for it in chosen)
        for position, letter in enumerate(LETTERS[:4]):
            expected = sum(1 / len(it.options) for it in chosen if len(it.options) > position)
            assert abs(observed[letter] - expected) <= 4 * np.sqrt(expected) + 1, (
                question_type,
                observed,
            )
        assert max(observed.values()) / len(chosen) <= 0.5
        assert len({it.options for it in chosen}) > 10


def _pictures(modality, question_type, answer, count=10, size=SIZE):
    rng = np.random.default_rng(0)
    items = [synth.compose(i, modality, question_type, answer, rng) for i in range(count)]
    return [synth.draw(item, SEED, size).pixels for item in items]


def test_hemorrhage_brightens_the_brain():
    """CT head diagnosis: hemorrhage answers show a patch of blood density (60-110 HU)."""
    head = synth.KINDS[("CT", synth.DIAGNOSIS)][0]
    assert head.fixed["anatomy"] == "head" and head.values[1] == "hemorrhage"
    rng = np.random.default_rng(1)
    blood = {0: [], 1: []}  # answer index -> fraction of pixels at blood density
    for i in range(60):
        item = synth.compose(i, "CT", synth.DIAGNOSIS, i % 2, rng)
        if item.scene.anatomy == "head":
            hu = synth.draw(item, 0, SIZE).pixels
            blood[i % 2].append(np.mean((hu > 60) & (hu < 110)))
    assert len(blood[0]) >= 3 and len(blood[1]) >= 3
    assert min(blood[1]) > 2 * max(blood[0])


def test_pneumonia_side_shows_in_the_lung_halves():
    """X-ray attribute: a patient-left opacity brightens the image right half, and vice versa."""

    def right_minus_left(img):
        return img[:, SIZE // 2 :].mean() - img[:, : SIZE // 2].mean()

    left = [right_minus_left(p) for p in _pictures("X-Ray", synth.ATTRIBUTE, 0)]
    right = [right_minus_left(p) for p in _pictures("X-Ray", synth.ATTRIBUTE, 1)]
    assert np.mean(left) > 0.02 > -0.02 > np.mean(right)


def test_stain_colour_differs():
    """Microscopy attribute: H&E is red-pink, Masson trichrome is blue."""
    he = [p[..., 0].mean() - p[..., 2].mean() for p in _pictures("Microscopy", synth.ATTRIBUTE, 0)]
    trichrome = [
        p[..., 0].mean() - p[..., 2].mean() for p in _pictures("Microscopy", synth.ATTRIBUTE, 2)
    ]
    assert min(he) > max(trichrome)


def test_lesion_size_grows_with_grade():
    """Ultrasound grading: the dark cyst covers more of the fan as the grade rises."""
    dark = [
        np.mean([np.mean(p < 0.06) for p in _pictures("Ultrasound", synth.GRADING, g)])
        for g in range(3)
    ]
    assert dark[0] < dark[1] < dark[2]


def test_examples_gallery(tmp_path):
    entries = synth.write_examples(tmp_path, per_modality=2, seed=0)
    assert len(entries) == 2 * len(MODALITIES)
    assert {e["modality"] for e in entries} == set(MODALITIES)
    assert json.loads((tmp_path / "examples.json").read_text()) == entries
    for e in entries:
        assert (tmp_path / e["file"]).is_file() and (tmp_path / e["png"]).is_file()
        assert e["answer"] in LETTERS[: len(e["options"])]
        assert e["file"].endswith(".dcm") == (e["modality"] in dicom_export.DICOM_MODALITIES)
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) < 2_000_000


def test_every_dicom_loads_in_the_app(dataset):
    for r in records(dataset):
        if "dicom" in r:
            scan = load_scan(dataset / r["dicom"])
            assert scan.image.mode == "RGB" and scan.image.size == (SIZE, SIZE)
            shown = np.asarray(Image.open(dataset / r["image"]).convert("RGB")).astype(int)
            assert np.abs(np.asarray(scan.image).astype(int) - shown).max() <= 1, r["dicom"]


@pytest.mark.parametrize(
    "args",
    [["--n", "0"], ["--test_fraction", "1.5"], ["--image_size", "8"], ["--seed", "-1"]],
)
def test_bad_cli_input_is_refused_in_plain_words(tmp_path, capsys, args):
    assert synth.main(["--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synth: ") and "Traceback" not in err


def test_cli_refuses_a_foreign_folder_and_replaces_its_own(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    assert synth.main(["--out", str(tmp_path), "--n", "8", "--quiet"]) == 2
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    out = tmp_path / "run"
    assert synth.main(["--out", str(out), "--n", "8", "--image_size", "32", "--quiet"]) == 0
    assert synth.main(["--out", str(out), "--n", "8", "--quiet"]) == 2
    assert (
        synth.main(["--out", str(out), "--n", "16", "--image_size", "32", "--overwrite", "--quiet"])
        == 0
    )
    assert json.loads((out / "manifest.json").read_text())["n"] == 16
    assert "Traceback" not in capsys.readouterr().err
