"""Tests of medr1_demo.scan.reader: every DICOM file pydicom ships, DICOMs built here, plain pictures,
refusals and the identifier allow-list. CPU only, offline, a few seconds.

Run: .venv/bin/python -m pytest tests/test_imaging.py -q
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import make_dicom, ramp
from PIL import Image
from pydicom import dcmread
from pydicom.data import DATA_ROOT, get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    MPEG4HP41,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from medr1_demo.scan.reader import (
    CT_WINDOWS,
    DEFAULT_MAX_PIXELS,
    WINDOW_CHOICES,
    Scan,
    ScanError,
    load_scan,
)

# get_testdata_files() also fetches pydicom's download-only files (minutes of retries offline),
# so the shipped store is listed directly and each name resolved with download=False.
SHIPPED = sorted(
    str(p.relative_to(Path(DATA_ROOT, "test_files")))
    for p in Path(DATA_ROOT, "test_files").rglob("*")
    if p.is_file() and p.suffix != ".py"
)
REASONS = {"empty", "not_image", "damaged", "truncated", "no_image", "unsupported_compression",
           "undecodable", "unsupported_colour", "too_large", "zero_size", "unreadable"}  # fmt: skip


def shipped(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} should ship with pydicom 3"
    return Path(path)


def grey(scan: Scan) -> np.ndarray:
    """The picture as one grey channel (asserting it is grey: R = G = B)."""
    rgb = np.asarray(scan.image).astype(int)
    assert scan.image.mode == "RGB" and (rgb[..., 0] == rgb[..., 2]).all()
    return rgb[..., 0]


def refusal(path, **kwargs) -> ScanError:
    with pytest.raises(ScanError) as caught:
        load_scan(path, **kwargs)
    assert str(caught.value).strip() and caught.value.reason
    return caught.value


# ------------------------------------------------------------------ pydicom's own test files
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_file_gives_a_picture_or_a_plain_refusal(name):
    try:
        scan = load_scan(shipped(name))
    except ScanError as err:
        assert err.reason in REASONS and len(str(err)) > 20
        return
    assert scan.image.mode == "RGB" and scan.kind == "DICOM"
    assert scan.image.size == (int(scan.metadata["Columns"]), int(scan.metadata["Rows"]))
    assert 0 <= scan.frame_index < scan.frame_count


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's notes on odd test files
def test_most_image_bearing_shipped_files_load():
    bearing = loaded = 0
    for name in SHIPPED:
        try:
            has_pixels = "PixelData" in dcmread(shipped(name), force=True, defer_size=1024)
        except Exception:
            continue
        bearing += has_pixels
        with contextlib.suppress(ScanError):
            loaded += has_pixels and load_scan(shipped(name)).image.mode == "RGB"
    assert bearing >= 80 and loaded >= 0.9 * bearing, (loaded, bearing)


@pytest.mark.parametrize(
    "name",
    [
        "JPEG2000.dcm",  # JPEG 2000
        "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
        "MR_small_RLE.dcm",  # RLE
        "SC_rgb_rle_16bit.dcm",  # RLE, 16-bit colour
        "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
        "SC_rgb_jls_lossy_line.dcm",  # JPEG-LS near-lossless
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR
        "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless
        "image_dfl.dcm",  # deflated dataset
        "MR_small_bigendian.dcm",  # big endian
        "SC_ybr_full_422_uncompressed.dcm",  # native YBR 4:2:2
        "examples_palette.dcm",  # palette colour
        "liver_1frame.dcm",  # 1-bit segmentation
        "rtdose.dcm",  # 32-bit, 15 frames
    ],
)
def test_named_encodings_decode(name):
    scan = load_scan(shipped(name))
    expected = dcmread(shipped(name)).file_meta.TransferSyntaxUID.name
    assert scan.metadata["Transfer syntax"] == expected
    assert np.asarray(scan.image).std() > 0  # a real picture, not a blank


def test_twelve_bit_jpeg_without_a_gpl_free_decoder_is_refused_by_name():
    err = refusal(shipped("JPEG-lossy.dcm"))
    assert "JPEG Extended" in str(err)


def test_ybr_ultrasound_colours_match_pillows_decoding_of_the_same_frame():
    path = shipped("examples_ybr_color.dcm")
    scan = load_scan(path, frame=7)
    ds = dcmread(path)
    fragments = list(generate_frames(ds.PixelData, number_of_frames=30))
    reference = np.asarray(Image.open(io.BytesIO(fragments[7])).convert("RGB")).astype(int)
    ours = np.asarray(scan.image).astype(int)
    assert np.abs(ours - reference).mean() < 2.0
    assert (np.abs(ours[..., 0] - ours[..., 2]) > 20).sum() > 300  # colour Doppler kept
    assert scan.frame_count == 30 and load_scan(path).frame_index == 15
    assert not np.array_equal(np.asarray(load_scan(path, frame=0).image), ours)


def test_palette_colour_becomes_rgb():
    rgb = np.asarray(load_scan(shipped("examples_palette.dcm")).image).astype(int)
    assert (np.abs(rgb[..., 0] - rgb[..., 1]) > 20).mean() > 0.1


# ----------------------------------------------------------------------- DICOM built here
HU = np.array([-1000, -160, 40, 240, 1000])


@pytest.mark.parametrize(
    ("stored", "slope", "intercept"),
    [
        ((HU + 1024).astype(np.uint16), 1, -1024),  # unsigned with the usual intercept
        (HU.astype(np.int16), 1, 0),  # signed Hounsfield units
        (((HU + 1000) // 2).astype(np.uint16), 2, -1000),  # slope 2
    ],
)
def test_ct_rescale_then_soft_tissue_window(tmp_path, stored, slope, intercept):
    pixels = np.repeat(stored[None, :], 4, axis=0)
    path = make_dicom(tmp_path / "ct", pixels, Modality="CT", RescaleSlope=slope,
                      RescaleIntercept=intercept)  # fmt: skip
    scan = load_scan(path)  # no window in the file: CT defaults to soft tissue
    assert scan.window == "soft tissue (C 40 / W 400)" and scan.windowable
    row = grey(scan)[0]
    assert row[0] == 0 and row[-1] == 255  # -1000 HU black, +1000 HU white
    assert row[1] == 0 and row[3] == 255 and 126 <= row[2] <= 129  # window edges, centre
    lung = grey(load_scan(path, window="lung"))[0]
    assert 55 <= lung[0] <= 65 and lung[-1] == 255  # -1000 HU: 350 HU above the lung floor


def test_ct_presets_differ_and_the_files_window_is_auto(tmp_path):
    hu = np.linspace(-1100, 1500, 64 * 64).reshape(64, 64).astype(np.int16)
    path = make_dicom(tmp_path / "ct", hu, Modality="CT", RescaleSlope=1, RescaleIntercept=0,
                      WindowCenter=1000, WindowWidth=500)  # fmt: skip
    assert load_scan(path).window == "file window (C 1000 / W 500)"
    pictures = {w: grey(load_scan(path, window=w)).tobytes() for w in WINDOW_CHOICES}
    assert len(set(pictures.values())) == len(WINDOW_CHOICES)
    assert load_scan(path, window="bone").window.startswith("bone (C 400")


def test_window_choices_and_presets():
    assert WINDOW_CHOICES[0] == "auto" and WINDOW_CHOICES[-1] == "full range"
    assert set(CT_WINDOWS) <= set(WINDOW_CHOICES)
    assert CT_WINDOWS["soft tissue"] == (40, 400) and CT_WINDOWS["lung"] == (-600, 1500)
    assert CT_WINDOWS["brain"] == (40, 80) and CT_WINDOWS["bone"][0] in (300, 400)
    assert DEFAULT_MAX_PIXELS >= 16_000_000


def test_file_voi_lut_is_applied(tmp_path):
    item = Dataset()
    item.add_new(0x00283002, "US", [256, 0, 8])  # LUT Descriptor: 256 entries from 0, 8 bits
    item.add_new(0x00283006, "US", list(range(255, -1, -1)))  # LUT Data: an inverting table
    path = make_dicom(tmp_path / "mr", ramp(high=255, dtype=np.uint8), Modality="MR",
                      VOILUTSequence=[item])  # fmt: skip
    scan = load_scan(path)
    row = grey(scan)[0]
    assert scan.window == "file VOI LUT" and row[0] == 255 and row[-1] == 0


def test_monochrome1_is_the_inverse_of_monochrome2(tmp_path):
    pixels = ramp()
    m1 = grey(load_scan(make_dicom(tmp_path / "m1", pixels, photometric="MONOCHROME1")))
    m2 = grey(load_scan(make_dicom(tmp_path / "m2", pixels, photometric="MONOCHROME2")))
    assert m2[0, 0] == 0 and m2[0, -1] == 255
    assert (m1 == 255 - m2).all()


def test_dicom_found_by_content_whatever_the_name(tmp_path):
    pixels = ramp()
    reference = grey(load_scan(make_dicom(tmp_path / "scan.dcm", pixels)))
    for name in ("upload", "scan.png", "x.txt"):
        scan = load_scan(make_dicom(tmp_path / name, pixels))
        assert scan.kind == "DICOM" and (grey(scan) == reference).all()


def test_dicom_without_preamble(tmp_path):
    pixels = ramp()
    path = make_dicom(tmp_path / "bare", pixels, preamble=False)
    raw = path.read_bytes()
    assert raw[128:132] != b"DICM" and raw[:2] == b"\x02\x00"
    expected = grey(load_scan(make_dicom(tmp_path / "full.dcm", pixels)))
    assert (grey(load_scan(path)) == expected).all()


@pytest.mark.parametrize("encoding", [RLELossless, JPEG2000Lossless])
def test_compressed_copy_shows_the_same_picture(tmp_path, encoding):
    pixels = ramp().astype(np.uint16)
    plain = grey(load_scan(make_dicom(tmp_path / "plain", pixels, Modality="MR")))
    packed = load_scan(make_dicom(tmp_path / "packed", pixels, Modality="MR", compress=encoding))
    assert packed.metadata["Transfer syntax"] == encoding.name and (grey(packed) == plain).all()


def test_multiframe_frame_choice(tmp_path):
    frames = np.stack([np.full((8, 8), 100 * i, np.uint16) for i in range(5)])
    path = make_dicom(tmp_path / "cine", frames, WindowCenter=200, WindowWidth=400)
    scan = load_scan(path)
    assert scan.frame_count == 5 and scan.frame_index == 2 and scan.metadata["Frames"] == "5"
    means = [grey(load_scan(path, frame=i)).mean() for i in range(5)]
    assert all(a < b for a, b in zip(means, means[1:], strict=False))
    assert means[2] == grey(scan).mean()
    for bad in (5, -1, 1.5, True):
        assert refusal(path, frame=bad).reason == "frame"


# --------------------------------------------------------------------------- plain pictures
def save(image: Image.Image, path: Path, fmt: str, **options) -> Path:
    image.save(path, format=fmt, **options)
    return path


@pytest.mark.parametrize(
    ("fmt", "kind", "mode", "colour", "tolerance"),
    [
        ("PNG", "PNG", "RGB", (200, 30, 60), 0),
        ("PNG", "PNG", "L", (200, 200, 200), 0),
        ("PNG", "PNG", "P", (200, 30, 60), 0),
        ("PNG", "PNG", "1", (255, 255, 255), 0),
        ("JPEG", "JPEG", "RGB", (200, 30, 60), 12),
        ("JPEG", "JPEG", "CMYK", (255, 0, 0), 12),
        ("BMP", "BMP", "RGB", (200, 30, 60), 0),
        ("WEBP", "WebP", "RGB", (200, 30, 60), 12),
        ("TIFF", "TIFF", "RGB", (200, 30, 60), 0),
    ],
)
def test_picture_formats_found_by_content(tmp_path, fmt, kind, mode, colour, tolerance):
    fill = {"L": 200, "1": 1, "CMYK": (0, 255, 255, 0)}.get(mode, colour)
    image = Image.new("RGB" if mode == "P" else mode, (16, 16), fill)
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    scan = load_scan(save(image, tmp_path / "upload.dcm", fmt))
    assert scan.kind == kind and scan.image.mode == "RGB" and scan.window is None
    assert not scan.windowable and scan.window_choices == ("auto",)
    assert np.abs(np.asarray(scan.image)[8, 8].astype(int) - colour).max() <= tolerance


def test_sixteen_bit_png_keeps_its_range_until_windowed(tmp_path):
    pixels = np.full((8, 16), 1000, np.uint16)
    pixels[:, 8:] = 40000  # both would be 255 if clipped to 8 bits first
    scan = load_scan(save(Image.fromarray(pixels), tmp_path / "p16", "PNG"))
    out = grey(scan)
    assert scan.windowable and scan.window.startswith("percentile")
    assert out[:, 8:].min() - out[:, :8].max() > 200
    ramp16 = ramp(8, 512, 65535)
    full = grey(
        load_scan(save(Image.fromarray(ramp16), tmp_path / "r16", "PNG"), window="full range")
    )
    assert (np.diff(full[0]) >= 0).all() and len(np.unique(full)) == 256
    assert refusal(tmp_path / "p16", window="lung").reason == "window"


def test_rgba_is_composited_on_white_as_med_r1_loaded_it(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 0, 0]], [[0, 255, 0, 128], [0, 0, 255, 255]]],
                    np.uint8)  # fmt: skip
    out = np.asarray(load_scan(save(Image.fromarray(rgba, "RGBA"), tmp_path / "a", "PNG")).image)
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 1].tolist() == [0, 0, 255] and 120 <= out[1, 0, 0] <= 136


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (64, 32), (255, 0, 0))
    stored.paste((0, 0, 255), (32, 0, 64, 32))  # left red, right blue, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    scan = load_scan(save(stored, tmp_path / "photo", "JPEG", exif=exif))
    rgb = np.asarray(scan.image).astype(int)
    assert scan.image.size == (32, 64)
    assert rgb[:24, :, 0].mean() > 200 and rgb[40:, :, 2].mean() > 200  # red on top, blue below


def test_multipage_tiff_frame_choice(tmp_path):
    pages = [Image.new("L", (8, 8), v) for v in (10, 120, 240)]
    path = tmp_path / "pages"
    pages[0].save(path, format="TIFF", save_all=True, append_images=pages[1:])
    scan = load_scan(path)
    assert (scan.kind, scan.frame_count, scan.frame_index) == ("TIFF", 3, 1)
    assert grey(scan).mean() == 120 and grey(load_scan(path, frame=2)).mean() == 240
    assert refusal(path, frame=3).reason == "frame"


# -------------------------------------------------------------------------------- refusals
def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; the pixel data is a stub."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
            + chunk(b"IEND", b""))  # fmt: skip


@pytest.mark.parametrize("side", [60000, 12000])  # past PIL's own cap, and only past ours
def test_decompression_bomb_png_refused_from_its_header(tmp_path, side):
    path = tmp_path / "bomb"
    path.write_bytes(png_header_only(side, side))
    started = time.perf_counter()
    assert refusal(path).reason == "too_large"
    assert time.perf_counter() - started < 1.0


def test_pixel_cap_is_a_parameter(tmp_path):
    path = save(Image.new("RGB", (100, 100)), tmp_path / "p", "PNG")
    assert refusal(path, max_pixels=5000).reason == "too_large"
    assert load_scan(path, max_pixels=10_000).image.size == (100, 100)


def test_dicom_bombs_refused_before_decoding(tmp_path):
    header = make_dicom(tmp_path / "big", ramp(8, 8), Rows=60000, Columns=60000,
                        NumberOfFrames=500)  # fmt: skip
    started = time.perf_counter()
    assert refusal(header).reason == "too_large"
    assert time.perf_counter() - started < 1.0
    deflated = make_dicom(
        tmp_path / "dfl", ramp(8, 8), transfer_syntax=DeflatedExplicitVRLittleEndian
    )
    ds = dcmread(deflated)
    ds.add_new(0x00091010, "OB", bytes(4_000_000))  # inflates 1000-fold
    ds.save_as(deflated)
    assert deflated.stat().st_size < 50_000
    assert refusal(deflated, max_pixels=10_000).reason == "too_large"
    assert load_scan(deflated).image.size == (8, 8)


def test_files_that_are_not_scans(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    assert refusal(empty).reason == "empty"
    text = tmp_path / "notes.dcm"
    text.write_text("Patient notes, not an image.\n" * 20)
    assert refusal(text).reason == "not_image"
    noise = tmp_path / "noise"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    assert refusal(noise).reason == "not_image"
    assert refusal(tmp_path / "missing").reason == "missing"
    assert refusal(save(Image.new("L", (4, 4)), tmp_path / "x", "PNG"), window="hot").reason == (
        "window"
    )


def test_truncated_files(tmp_path):
    whole = make_dicom(tmp_path / "whole", ramp(), Modality="MR").read_bytes()
    for cut in (140, 400, len(whole) // 2, len(whole) - 100):
        path = tmp_path / f"cut{cut}"
        path.write_bytes(whole[:cut])
        assert refusal(path).reason in {"damaged", "truncated", "unreadable"}
    noisy = np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)
    png = save(Image.fromarray(noisy), tmp_path / "whole.png", "PNG").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    assert refusal(tmp_path / "cut.png").reason == "damaged"


def test_zero_sized_dicom(tmp_path):
    assert refusal(make_dicom(tmp_path / "zero", ramp(4, 4), Rows=0)).reason == "zero_size"


def test_dicom_without_pixel_data(tmp_path):
    err = refusal(make_dicom(tmp_path / "sr", None, Modality="SR"))
    assert err.reason == "no_image" and "structured report" in str(err)


def test_unsupported_compression_is_named(tmp_path):
    path = make_dicom(tmp_path / "video", ramp(8, 8, 255, np.uint8))
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.PixelData = encapsulate([b"\x00\x00\x00\x01" * 8])
    ds.save_as(path)
    err = refusal(path)
    assert err.reason == "unsupported_compression" and MPEG4HP41.name in str(err)


def test_ct_presets_refused_for_other_modalities(tmp_path):
    path = make_dicom(tmp_path / "mr", ramp(), Modality="MR")
    assert refusal(path, window="lung").reason == "window"
    assert load_scan(path).window_choices == ("auto", "full range")


# ------------------------------------------------------------------- metadata and privacy
PLANTED = {
    "PatientName": "Quorvath^Elinsa",
    "PatientID": "PID-93AC71",
    "PatientBirthDate": "1947-03-12",  # malformed on purpose: pydicom's warnings quote it
    "InstitutionName": "Saint Ambrosia Clinic",
    "StudyDescription": "Chest follow-up Quorvath",
    "SeriesDescription": "Axial Elinsa",
    "ReferringPhysicianName": "Halvorsen^Ilse",
    "AccessionNumber": "ACC-55310",
    "OperatorsName": "Tekkamor",
    "StudyDate": "20240229",
}
NEEDLES = ("quorvath", "elinsa", "93ac71", "1947", "ambrosia", "halvorsen", "ilse", "55310",
           "tekkamor", "20240229")  # fmt: skip


def assert_clean(text: str) -> None:
    found = [needle for needle in NEEDLES if needle in text.lower()]
    assert not found, found


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns when the test writes them
def test_identifiers_never_leave_the_module(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    tags = dict(PLANTED, Modality="CT", RescaleSlope=1, RescaleIntercept=-1024,
                BodyPartExamined="CHEST", PixelSpacing=[0.5, 0.5], SliceThickness=2.5)  # fmt: skip
    path = make_dicom(tmp_path / "planted", ramp(16, 16).astype(np.uint16), **tags)
    whole = path.read_bytes()
    no_pixels = make_dicom(tmp_path / "sr", None, **dict(PLANTED, Modality="SR"))
    for name, data in (("cut", whole[: len(whole) - 300]), ("head", whole[:900])):
        (tmp_path / name).write_bytes(data)
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = load_scan(path)
        errors = [refusal(path, frame=9), refusal(path, window="nope")]
        errors += [refusal(p) for p in (tmp_path / "cut", tmp_path / "head", no_pixels)]
    assert_clean(" ".join(f"{k} {v}" for k, v in scan.metadata.items()))
    assert_clean(" ".join((*scan.warnings, str(scan.window), str(scan), repr(scan))))
    assert_clean(" ".join(str(err) for err in errors))
    assert_clean(" ".join(record.getMessage() for record in caplog.records))
    assert_clean(" ".join(str(w.message) for w in caught))
    assert scan.metadata["Modality"] == "CT" and scan.metadata["Body part"] == "CHEST"
    assert scan.metadata["Pixel spacing"] == "0.5 x 0.5 mm"
    assert scan.metadata["Slice thickness"] == "2.5 mm"
    assert scan.metadata["Transfer syntax"] == "Explicit VR Little Endian"
    assert set(scan.metadata) <= {"Format", "Modality", "Body part", "Rows", "Columns", "Frames",
                                  "Pixel spacing", "Imager pixel spacing", "Slice thickness",
                                  "Photometric interpretation", "Bits stored", "Transfer syntax",
                                  "Window"}  # fmt: skip


def test_free_text_in_allow_listed_fields_is_dropped_and_never_logged(tmp_path, caplog):
    path = make_dicom(tmp_path / "odd", ramp(8, 8), SliceThickness="1234567.89",
                      BodyPartExamined="KNEEXQUORVATHX")  # fmt: skip
    raw = path.read_bytes().replace(b"1234567.89", b"QUORVATH X")  # text where a number belongs
    path.write_bytes(raw.replace(b"KNEEXQUORVATHX", b"knee Quorvath "))  # lower case: not a code
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = load_scan(path)
    assert "Body part" not in scan.metadata and "Slice thickness" not in scan.metadata
    assert_clean(" ".join(f"{k} {v}" for k, v in scan.metadata.items()))
    assert_clean(" ".join(record.getMessage() for record in caplog.records))
    assert_clean(" ".join(str(w.message) for w in caught))


def test_burned_in_annotation_flag(tmp_path):
    yes = load_scan(make_dicom(tmp_path / "yes", ramp(8, 8), BurnedInAnnotation="YES"))
    no = load_scan(make_dicom(tmp_path / "no", ramp(8, 8), BurnedInAnnotation="NO"))
    assert yes.burned_in_annotation and any("burned" in w for w in yes.warnings)
    assert not no.burned_in_annotation and no.warnings == ()
