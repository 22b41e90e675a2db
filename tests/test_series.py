"""Tests of series and volumes: DICOM series (several files or a ZIP) and NIfTI volumes, built here
with pydicom and nibabel; ordering, planes and their aspect, fallbacks, ZIP safety and privacy.

Run: .venv/bin/python -m pytest tests/test_series.py -q
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import struct
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_factory import make_dicom
from PIL import Image
from pydicom.uid import generate_uid

from medr1_demo.scan.cache import ScanCache
from medr1_demo.scan.reader import SeriesChoice, load_scan, open_scan, open_upload
from medr1_demo.scan.types import PLANES, ScanError

AXIAL_IOP = [1, 0, 0, 0, 1, 0]
PLANTED = ("Plantedname^Jane", "PID-4471-PLANTED", "Planted head protocol", "St Planted Infirmary")


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    modality: str = "CT",
    spacing: float = 5.0,
    pixel: float = 0.7,
    iop=AXIAL_IOP,
    number: int = 3,
    names=None,
    positions=None,
    instances=None,
    **tags,
) -> list[Path]:
    """`volume` [slice, row, column] as one DICOM file per slice, slice k at k * spacing.

    CT values are Hounsfield units stored +1024; planted identifiers are in every slice.
    """
    folder.mkdir(parents=True, exist_ok=True)
    uid = tags.pop("SeriesInstanceUID", generate_uid())
    row, column = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row, column)
    ct = modality == "CT"
    paths = []
    for k, plane in enumerate(volume):
        where = positions[k] if positions is not None else list(normal * spacing * k)
        stored = (plane + 1024).astype(np.int16) if ct else plane.astype(np.uint16)
        rescale = {"RescaleIntercept": -1024, "RescaleSlope": 1} if ct else {}
        name = names[k] if names else f"slice{k:03d}"
        paths.append(
            make_dicom(
                folder / name, stored, Modality=modality, SeriesInstanceUID=uid,
                SeriesNumber=number, ImageOrientationPatient=list(iop),
                ImagePositionPatient=where, PixelSpacing=[pixel, pixel],
                InstanceNumber=instances[k] if instances is not None else k + 1,
                PatientName=PLANTED[0], PatientID=PLANTED[1], SeriesDescription=PLANTED[2],
                InstitutionName=PLANTED[3], **rescale, **tags,
            )
        )  # fmt: skip
    return paths


def zip_files(path: Path, files, names=None, extra=()) -> Path:
    """A ZIP of `files` under `names` (default: a folder), plus (name, bytes) `extra` members."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i, file in enumerate(files):  # names as given: ZipFile.write would clean them
            name = names[i] if names else f"study/series/{Path(file).name}"
            archive.writestr(zipfile.ZipInfo(name), Path(file).read_bytes(), zipfile.ZIP_DEFLATED)
        for name, data in extra:
            archive.writestr(name, data)
    return path


def marked_volume(slices: int = 12, size: int = 32) -> np.ndarray:
    """Soft tissue with a bright marker whose value grows with the slice (10 HU a slice)."""
    volume = np.full((slices, size, size), 40, np.int16)
    for k in range(slices):
        volume[k, 4:12, 4:12] = 200 + 10 * k
    return volume


def grey(scan) -> np.ndarray:
    return np.asarray(scan.image.convert("L")).astype(int)


def text_of(*things) -> str:
    """Everything a person could see of scans, choices and errors, as one string."""
    out = []
    for thing in things:
        if isinstance(thing, SeriesChoice):
            out += [*thing.labels, *thing.notes]
        elif isinstance(thing, BaseException):
            out.append(str(thing))
        else:
            out += [str(thing.metadata), *thing.warnings, str(thing.window), thing.kind]
    return "\n".join(out)


# ------------------------------------------------------------------------------ ordering
def test_a_shuffled_zip_series_comes_back_in_anatomical_order(tmp_path):
    volume = marked_volume()
    names = [f"IM{random.Random(k).randrange(10**6):06d}" for k in range(len(volume))]
    instances = random.Random(1).sample(range(1, 13), 12)  # the numbering says nothing either
    files = write_series(tmp_path / "s", volume, names=names, instances=instances)
    shuffled = random.Random(2).sample(files, len(files))
    opened = open_upload(
        zip_files(tmp_path / "s.zip", shuffled, [f"a/b/{p.name}" for p in shuffled])
    )
    assert opened.kind == "DICOM series" and opened.planes == PLANES
    markers = [grey(opened.picture(k, "full range", "axial"))[8, 8] for k in range(12)]
    assert markers == sorted(markers) and len(set(markers)) == 12  # inferior (k=0) to superior


def test_a_reversed_series_is_shown_the_right_way_round(tmp_path):
    volume = marked_volume()
    volume[:, 2, :] = 900  # a bright line near the anterior edge (row 2)
    upright = open_upload(write_series(tmp_path / "up", volume))
    # The same anatomy stored upside down and head first: rows run posterior to anterior
    # (column direction -y, so the normal is -z) and instance 1 is the most superior slice.
    flipped = volume[::-1, ::-1, :]
    n, size = len(volume), volume.shape[1]
    positions = [[0, (size - 1) * 0.7, 5.0 * (n - 1 - k)] for k in range(n)]
    reversed_ = open_upload(
        write_series(tmp_path / "down", flipped, iop=[1, 0, 0, 0, -1, 0], positions=positions)
    )
    for plane in PLANES:
        for k in (0, 5):
            a, b = (
                upright.picture(k, "full range", plane),
                reversed_.picture(k, "full range", plane),
            )
            assert a.image.size == b.image.size
            assert np.array_equal(grey(a), grey(b)), (plane, k)
    assert grey(upright.picture(0, "full range", "axial"))[2].mean() > 200  # anterior at the top


def test_without_positions_slices_follow_instance_numbers_and_are_browsed_one_by_one(tmp_path):
    volume = marked_volume(6)
    files = write_series(tmp_path / "s", volume, instances=[6, 5, 4, 3, 2, 1])
    for path in files:  # drop the geometry
        from pydicom import dcmread

        ds = dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    opened = open_upload(files)
    scan = opened.picture(0, "full range")
    assert opened.planes == () and scan.planes == ()
    assert any("slice by slice" in w and "where they lie" in w for w in scan.warnings)
    markers = [grey(opened.picture(k, "bone"))[8, 8] for k in range(6)]
    assert markers == sorted(markers, reverse=True)  # instance 1 (the last written) first
    with pytest.raises(ScanError, match="slice by slice"):
        opened.picture(0, "auto", "coronal")


# -------------------------------------------------------------------------------- planes
def test_a_coronal_reformat_of_5_mm_slices_and_0_7_mm_pixels_has_square_pixels(tmp_path):
    volume = np.full((20, 64, 64), -1000, np.int16)
    volume[5:12, 10:60, 7:57] = 40  # a box 35 mm (7 slices of 5 mm) by 35 mm (50 pixels)
    opened = open_upload(write_series(tmp_path / "s", volume, spacing=5.0, pixel=0.7))
    axial = opened.picture(None, "soft tissue", "axial")
    coronal = opened.picture(32, "soft tissue", "coronal")
    sagittal = opened.picture(32, "soft tissue", "sagittal")
    assert axial.image.size == (64, 64)
    assert coronal.image.size == sagittal.image.size == (64, round(20 * 5 / 0.7))
    assert coronal.frame_count == 64 and coronal.plane == "coronal"
    box = grey(coronal) > grey(coronal).max() / 2  # edges halfway between slice centres
    height, width = box.any(axis=1).sum(), box.any(axis=0).sum()
    assert abs(height - width) <= 2, (height, width)  # the box is as tall as it is wide
    assert coronal.window == axial.window  # presets work on any plane
    rows = np.flatnonzero(box.any(axis=1))  # slices 5-11 of 20: below the middle, as superior is up
    assert rows.mean() > coronal.image.height / 2


def test_an_oblique_but_consistent_series_is_a_volume_with_a_note(tmp_path):
    angle = np.radians(20)
    iop = [1, 0, 0, 0, np.cos(angle), np.sin(angle)]  # tilted 20 degrees about left-right
    opened = open_upload(write_series(tmp_path / "s", marked_volume(), iop=iop))
    scan = opened.picture(None, "auto")
    assert opened.planes == PLANES and scan.metadata["Orientation"] == "oblique"
    assert any("tilted 20 degrees" in w for w in scan.warnings)
    markers = [grey(opened.picture(k, "full range"))[8, 8] for k in range(12)]
    assert markers == sorted(markers)


@pytest.mark.parametrize(
    "spoil, why",
    [
        ("orientation", "different orientations"),
        ("size", "different sizes"),
        ("gap", "unevenly spaced"),
    ],
)
def test_an_inconsistent_series_falls_back_to_slice_by_slice(tmp_path, spoil, why):
    files = write_series(tmp_path / "s", marked_volume(8))
    if spoil == "orientation":
        write_series(tmp_path / "s", marked_volume(2), iop=[1, 0, 0, 0, 0, -1], names=["x1", "x2"],
                     SeriesInstanceUID=str(_uid(files[0])))  # fmt: skip
    elif spoil == "size":
        write_series(tmp_path / "s", np.full((1, 16, 16), 40, np.int16), names=["small"],
                     positions=[[0, 0, 100.0]], SeriesInstanceUID=str(_uid(files[0])))  # fmt: skip
    else:
        files[-1].unlink()
        write_series(tmp_path / "s", marked_volume(1), names=["far"], positions=[[0, 0, 200.0]],
                     SeriesInstanceUID=str(_uid(files[0])))  # fmt: skip
    opened = open_upload(sorted((tmp_path / "s").iterdir()))
    scan = opened.picture(0, "auto")
    assert opened.planes == () and scan.kind == "DICOM series"
    assert any("slice by slice" in w and why in w for w in scan.warnings), scan.warnings
    assert scan.frame_count == len(list((tmp_path / "s").iterdir()))
    assert opened.picture(scan.frame_count - 1, "auto").image.size[0] > 0


def test_a_damaged_slice_is_named_by_its_place_in_the_series(tmp_path):
    files = write_series(tmp_path / "s", marked_volume(6))
    files[2].write_bytes(files[2].read_bytes()[:-500])  # pixel data cut short
    with pytest.raises(ScanError) as caught:
        open_upload(files)
    assert str(caught.value).startswith(
        "Slice 3 of 6 in this series could not be shown. This DICOM"
    )
    assert caught.value.reason == "truncated"


def _uid(path):
    from pydicom import dcmread

    return dcmread(path, stop_before_pixels=True).SeriesInstanceUID


def test_plane_arguments_are_checked_with_plain_sentences(tmp_path, ct_dicom):
    opened = open_upload(write_series(tmp_path / "s", marked_volume()))
    with pytest.raises(ScanError, match="Unknown plane"):
        opened.picture(0, "auto", "diagonal")
    with pytest.raises(ScanError, match="12 slices, so slice 12 does not exist"):
        opened.picture(12, "auto", "axial")
    single = open_scan(ct_dicom)  # one picture: "axial" is its only view, other planes refused
    assert single.picture(None, "auto", "axial").image.size == load_scan(ct_dicom).image.size
    with pytest.raises(ScanError, match="no coronal view"):
        single.picture(None, "auto", "coronal")


# ------------------------------------------------------------------------ several series
def test_two_series_in_one_zip_are_offered_separately(tmp_path):
    ct = write_series(tmp_path / "ct", marked_volume(5), number=3)
    mr = write_series(
        tmp_path / "mr",
        np.full((4, 24, 24), 300, np.int16),
        modality="MR",
        number=7,
        iop=[0, 1, 0, 0, 0, -1],
    )  # fmt: skip (sagittal)
    archive = zip_files(tmp_path / "two.zip", ct + mr, [f"x/{i}" for i in range(9)])
    choice = open_upload(archive)
    assert isinstance(choice, SeriesChoice) and len(choice) == 2
    assert choice.labels == (
        "1. CT, series 3, 5 slices, axial",
        "2. MR, series 7, 4 slices, sagittal",
    )
    ct_scan, mr_scan = choice.open(0).picture(), choice.open(1).picture()
    assert ct_scan.metadata["Modality"] == "CT" and ct_scan.metadata["Slices"] == "5"
    assert mr_scan.metadata["Modality"] == "MR" and mr_scan.plane == "sagittal"
    assert "lung" in ct_scan.window_choices and "lung" not in mr_scan.window_choices
    assert open_upload(archive, series=1).picture().metadata["Modality"] == "MR"
    with pytest.raises(ScanError, match="holds 2 series; choose one: 1. CT"):
        open_scan(archive)
    with pytest.raises(ScanError, match="numbered 0 to 1"):
        choice.open(2)


def test_several_uploaded_files_skip_and_count_what_is_not_dicom(tmp_path):
    files = write_series(tmp_path / "s", marked_volume(4))
    png = tmp_path / "photo"
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    notes = tmp_path / "notes"
    notes.write_text("not a scan")
    scan = open_upload([*files, png, notes]).picture()
    assert scan.frame_count == 4
    assert "2 files in the upload are not DICOM images and were skipped." in scan.warnings
    with pytest.raises(ScanError, match="on its own"):
        open_upload([files[0], zip_files(tmp_path / "a.zip", files)])


# ------------------------------------------------------------------------------ ZIP safety
def test_a_zip_bomb_is_refused_fast_before_inflating(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("a.dcm", "w", force_zip64=True) as member,
    ):
        for _ in range(300):  # 300 MB of zeros in about 300 KB
            member.write(bytes(1 << 20))
    assert bomb.stat().st_size < 1 << 20
    started = time.perf_counter()
    with pytest.raises(ScanError) as caught:
        open_upload(bomb)
    assert time.perf_counter() - started < 0.5
    assert caught.value.reason == "zip_bomb" and "would unpack to more" in str(caught.value)


def test_a_zip_whose_directory_understates_a_member_is_refused_while_inflating(tmp_path):
    files = write_series(tmp_path / "s", marked_volume(3))
    archive = zip_files(tmp_path / "lie.zip", files, ["a", "b", "c"])
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):  # uncompressed size
        at = data.find(signature)
        while at >= 0:
            real = struct.unpack("<I", data[at + offset : at + offset + 4])[0]
            data[at + offset : at + offset + 4] = struct.pack("<I", real // 2)
            at = data.find(signature, at + 4)
    archive.write_bytes(bytes(data))
    with pytest.raises(ScanError) as caught:
        open_upload(archive)
    assert str(caught.value) == (
        "This ZIP holds no DICOM images. 3 files could not be read and were skipped."
    )


def test_names_leading_out_of_the_zip_are_skipped_never_shown(tmp_path):
    files = write_series(tmp_path / "s", marked_volume(4))
    names = ["../../etc/PlantedEvil", "/abs/PlantedAbs", "C:/PlantedDrive", "ok/IM4"]
    archive = zip_files(tmp_path / "names.zip", files, names)
    scan = open_upload(archive).picture()
    assert scan.frame_count == 1  # only the safe member was read
    assert (
        "3 files with an unsafe name (a path leading out of the ZIP's folder) were skipped."
        in scan.warnings
    )
    assert "Planted" not in text_of(scan) and "etc" not in text_of(scan)
    only_unsafe = zip_files(tmp_path / "bad.zip", files[:2], names[:2])
    with pytest.raises(ScanError, match="holds no DICOM images") as caught:
        open_upload(only_unsafe)
    assert "Planted" not in str(caught.value) and "unsafe name" in str(caught.value)
    assert not (tmp_path.parent / "etc").exists()  # nothing was written anywhere


def test_a_zip_of_20000_tiny_files_is_refused_from_its_directory(tmp_path):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w", zipfile.ZIP_STORED) as archive:
        for i in range(20_000):
            archive.writestr(f"d/{i}", b"x")
    started = time.perf_counter()
    with pytest.raises(ScanError, match="holds 20000 files; this app opens at most 10000"):
        open_upload(many)
    assert time.perf_counter() - started < 0.5


def test_a_zip_of_text_files_or_nothing_gets_a_plain_sentence(tmp_path):
    text = zip_files(tmp_path / "t.zip", [], extra=[("a.txt", "x"), ("b/c.txt", "y")])
    with pytest.raises(ScanError) as caught:
        open_upload(text)
    assert str(caught.value) == (
        "This ZIP holds no DICOM images. 2 files in the upload are not DICOM images and were skipped."
    )
    empty = zip_files(tmp_path / "e.zip", [])
    with pytest.raises(ScanError, match="This ZIP holds no files"):
        open_upload(empty)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(text.read_bytes()[:40])
    with pytest.raises(ScanError, match="damaged or incomplete"):
        open_upload(broken)


def test_dicomdir_and_system_files_are_ignored_without_a_note(tmp_path):
    files = write_series(tmp_path / "s", marked_volume(4))
    extra = [("DICOMDIR", b"index"), ("__MACOSX/._IM1", b"fork"), ("s/.DS_Store", b"x")]
    scan = open_upload(zip_files(tmp_path / "d.zip", files, extra=extra)).picture()
    assert scan.frame_count == 4 and scan.warnings == ()


# ------------------------------------------------------------------------- memory, budget
def test_the_decoded_volume_is_kept_so_slices_need_no_file(tmp_path):
    archive = zip_files(tmp_path / "s.zip", write_series(tmp_path / "s", marked_volume()))
    cache = ScanCache()
    opened = cache.open_upload([str(archive)])
    assert cache.open_upload([str(archive)]) is opened and opened.nbytes == 12 * 32 * 32 * 4
    assert opened.picture(0, "bone", "sagittal").frame_count == 32
    archive.unlink()  # the slider moves on after the upload is gone: nothing is read again
    assert opened.picture(11, "bone", "axial").image.size == (32, 32)
    assert opened.picture(3, "lung", "coronal").image.size == (32, round(12 * 5 / 0.7))
    other = tmp_path / "photo"
    Image.new("RGB", (8, 8)).save(other, format="PNG")
    cache.open(str(other))
    # The page deletes an upload once read: the series stays in memory for its slider.
    assert len(cache) == 2 and cache.open_upload([str(archive)]) is opened


def test_a_series_over_the_voxel_budget_is_refused_before_decoding(tmp_path):
    files = write_series(tmp_path / "s", marked_volume())
    with pytest.raises(ScanError, match="too large to open here") as caught:
        open_upload(files, max_voxels=5_000)
    assert caught.value.reason == "too_large"


# ------------------------------------------------------------------------------- NIfTI
def nifti(path: Path, data: np.ndarray, affine, gz: bool = False, scaling=None) -> Path:
    """A NIfTI-1 file without an extension (found by content); `scaling`: (scl_slope, scl_inter)."""
    raw = bytearray(nib.Nifti1Image(data, affine).to_bytes())
    if scaling is not None:
        raw[112:120] = struct.pack("<ff", *scaling)
    path.write_bytes(gzip.compress(bytes(raw)) if gz else bytes(raw))
    return path


def test_nifti_in_ras_and_in_lps_give_the_same_pictures(tmp_path):
    rng = np.random.default_rng(0)
    ras = rng.integers(0, 1000, (20, 24, 16)).astype(np.int16)  # i to the right, j anterior
    ras[2:5, 18:22, :] = 3000  # a marker on the patient's left (low i), anterior (high j)
    zooms = np.diag([0.8, 0.8, 2.5, 1.0])
    a = open_scan(nifti(tmp_path / "ras", ras, zooms))
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ zooms
    lps_affine[:3, 3] = [0.8 * 19, 0.8 * 23, 0]  # the same voxel centres
    b = open_scan(nifti(tmp_path / "lps", ras[::-1, ::-1, :].copy(), lps_affine, gz=True))
    assert a.kind == b.kind == "NIfTI" and a.planes == PLANES
    for plane in PLANES:
        pa, pb = a.picture(3, "auto", plane), b.picture(3, "auto", plane)
        assert np.array_equal(grey(pa), grey(pb)), plane
    axial = grey(a.picture(8, "full range", "axial"))
    bright = np.argwhere(axial > 200)
    # Radiological view: the patient's left is on the picture's right, anterior at the top.
    assert bright[:, 1].min() > axial.shape[1] / 2 and bright[:, 0].max() < axial.shape[0] / 2
    assert a.picture(None, "auto", "coronal").image.size == (20, round(16 * 2.5 / 0.8))


def test_nifti_values_decide_the_ct_presets_and_4d_shows_its_first_volume(tmp_path):
    hu = np.full((16, 16, 8), -1024, np.int16)
    hu[4:12, 4:12, :] = 40
    ct = open_scan(nifti(tmp_path / "ct", hu, np.eye(4)))
    scan = ct.picture(None, "lung")
    assert "lung" in scan.window_choices and scan.metadata["Values"].startswith("Hounsfield")
    mr = np.stack([np.full((8, 8, 4), v, np.float32) for v in (100.0, 500.0)], axis=3)
    mr[0, 0, 0, :] = 0
    four = open_scan(nifti(tmp_path / "mr", mr, np.eye(4), scaling=(2.0, 1.0)))
    shown = four.picture(None, "full range")
    assert "lung" not in shown.window_choices and shown.metadata["Volumes"] == "2"
    assert (
        "This NIfTI file holds 2 volumes (e.g. a time series); the first is shown."
        in shown.warnings
    )
    assert shown.window == "full range of the volume (1 to 201)"  # scl_slope/inter applied
    with pytest.raises(ScanError, match="CT preset"):
        four.picture(None, "lung")


def test_missing_nifti_values_are_shown_as_the_lowest_with_a_note(tmp_path):
    data = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    data[0, 0, 0] = np.nan
    scan = open_scan(nifti(tmp_path / "nan", data, np.eye(4))).picture(None, "full range")
    assert scan.window == "full range of the volume (1 to 47)"
    assert any("missing (NaN)" in w for w in scan.warnings)


def test_damaged_or_half_nifti_files_get_plain_sentences(tmp_path):
    whole = nifti(tmp_path / "v", np.zeros((8, 8, 8), np.int16), np.eye(4))
    cut = tmp_path / "cut"
    cut.write_bytes(whole.read_bytes()[:600])
    with pytest.raises(ScanError, match="damaged or cut short"):
        open_scan(cut)
    pair = tmp_path / "hdr"
    header = bytearray(whole.read_bytes()[:348])
    header[344:348] = b"ni1\x00"
    pair.write_bytes(bytes(header))
    with pytest.raises(ScanError, match="header half of a NIfTI"):
        open_scan(pair)
    with pytest.raises(ScanError, match="too large to open here"):
        open_scan(whole, max_voxels=100)


# ------------------------------------------------------------------------------- privacy
def test_planted_identifiers_appear_nowhere(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    leaky = [f"{PLANTED[0]}/{PLANTED[1]}/{k}" for k in range(6)]
    good = write_series(tmp_path / "a", marked_volume(6))
    mixed = write_series(tmp_path / "b", marked_volume(4), number=9,
                         iop=[1, 0, 0, 0, 0, -1])  # fmt: skip
    write_series(
        tmp_path / "b",
        marked_volume(2),
        names=["o1", "o2"],
        number=9,
        SeriesInstanceUID=str(_uid(mixed[0])),
    )  # fmt: skip (mixed orientations)
    files = good + sorted((tmp_path / "b").iterdir())
    names = leaky + [f"{PLANTED[2]}/{i}" for i in range(len(files) - 6)]
    archive = zip_files(tmp_path / "p.zip", files, names, extra=[(f"{PLANTED[3]}.txt", "x")])
    choice = open_upload(archive)
    seen = [choice]
    for index in range(len(choice)):
        opened = choice.open(index)
        for plane in opened.planes or (None,):
            seen += [opened.picture(0, "auto", plane), opened.picture(None, "auto", plane)]
        try:
            opened.picture(99)
        except ScanError as error:
            seen.append(error)
    for error_case in (lambda: open_scan(archive), lambda: choice.open(5)):
        try:
            error_case()
        except ScanError as error:
            seen.append(error)
    shown = text_of(*seen) + "\n" + caplog.text
    for planted in (*PLANTED, "Plantedname", "PLANTED", "Planted"):
        assert planted not in shown
    assert "slice by slice" in shown and "1 file in the upload is not a DICOM image" in shown


# ------------------------------------------------------------------------------- the API
def _uploaded(uploads: Path, path: Path) -> str:
    """`path` as Gradio stores an upload: `upload-<random>` in a folder of its own."""
    folder = uploads / f"{random.getrandbits(64):016x}"
    folder.mkdir(parents=True)
    target = folder / f"upload-{random.getrandbits(32):08x}"
    target.write_bytes(path.read_bytes())
    return str(target)


@pytest.fixture
def api(tiny_engine, tmp_path):
    """The API's handlers over a real tiny engine; every file they take must be an upload."""
    from medr1_demo.config import AppConfig, DecodingConfig
    from medr1_demo.web.handlers import Backend, Handlers

    short = DecodingConfig(max_new_tokens_thinking=4, max_new_tokens_no_thinking=4)
    backend = Backend(tiny_engine.info, tiny_engine.answer, tiny_engine.stream)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    return Handlers(backend, AppConfig(decoding=short), uploads=uploads, api_root=uploads)


def test_the_api_answers_on_a_chosen_series_plane_and_slice(api, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    mr = write_series(tmp_path / "mr", np.full((4, 24, 24), 300, np.int16), modality="MR",
                      number=2, iop=[0, 1, 0, 0, 0, -1])  # fmt: skip
    ct = write_series(tmp_path / "ct", marked_volume(12), number=9)  # 32 x 32, 5 mm slices
    names = [f"{PLANTED[0]}/{PLANTED[1]}/{i}" for i in range(len(mr) + len(ct))]
    archive = _uploaded(api.views.uploads, zip_files(tmp_path / "two.zip", mr + ct, names))
    asked = {"question": "Which?", "options": ["CT", "MRI"], "modes": ["no-thinking"]}
    result = api.answer_api(archive, series=1, plane="coronal", slice=10, **asked)
    assert result["ok"], result["error"]
    facts = result["scan"]
    assert (facts["series"], facts["plane"], facts["frame"], facts["frames"]) == (1, "coronal",
                                                                                  10, 32)  # fmt: skip
    assert facts["series_list"] == ["1. MR, series 2, 4 slices, sagittal",
                                    "2. CT, series 9, 12 slices, axial"]  # fmt: skip
    # a coronal cut: 12 slices of 5 mm (60 mm) high, 32 pixels of 0.7 mm (22 mm) wide
    assert facts["source_height"] > 2.5 * facts["source_width"]
    same = api.answer_api(archive, series="1", plane="coronal", slice=10, frame=10, **asked)
    assert same["ok"] and same["scan"]["frame"] == 10  # given twice, the same: no conflict
    twice = api.answer_api(archive, series=1, plane="coronal", slice=10, frame=3, **asked)
    assert not twice["ok"] and "Give the slice once" in twice["error"]
    gone = api.answer_api(archive, series=2, **asked)
    assert not gone["ok"] and "numbered 0 to 1" in gone["error"]
    shown = json.dumps([result, same, twice, gone]) + caplog.text
    for planted in (*PLANTED, "Plantedname", "PLANTED"):
        assert planted not in shown


def test_the_api_takes_a_series_as_loose_files(api, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    ct = write_series(tmp_path / "ct", marked_volume(12), number=9)
    random.Random(0).shuffle(ct)
    files = [_uploaded(api.views.uploads, path) for path in ct]
    asked = {"question": "Which?", "options": ["CT", "MRI"], "modes": ["no-thinking"]}
    result = api.answer_api(None, files=files, slice=3, **asked)
    assert result["ok"], result["error"]
    facts = result["scan"]
    assert (facts["kind"], facts["frames"], facts["frame"], facts["plane"]) == (
        "DICOM series", 12, 3, "axial")  # fmt: skip
    assert facts["series"] is None and facts["series_list"] == []
    assert not any(Path(f).exists() for f in files)  # read into memory, then deleted
    for planted in (*PLANTED, "Plantedname", "PLANTED"):
        assert planted not in json.dumps(result) + caplog.text
