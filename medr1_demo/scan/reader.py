"""Scan ingestion: an upload becomes the 8-bit RGB picture the model sees, plus safe metadata.

Uploads arrive as temporary files whose names mean nothing, so the format is read from the bytes
(`medr1_demo.scan.formats`): DICOM (with or without the 128-byte preamble), a PNG, JPEG, TIFF,
BMP or WebP picture, a ZIP (a DICOM folder zipped) or a NIfTI volume (`.nii`, `.nii.gz`). DICOM
files go to `medr1_demo.scan.dicom` (pydicom's LUT pipeline, allow-listed metadata), plain
pictures to `medr1_demo.scan.pictures`, a ZIP or several files to `medr1_demo.scan.series`
(grouped into series, each a `Volume` or browsed slice by slice), NIfTI to
`medr1_demo.scan.nifti`. Only allow-listed header fields leave them: names, IDs, dates,
institutions, free text and file names never do, not even inside error messages or log lines.
Every refusal is a `ScanError` whose message a clinician can read.

Three entry points:

    from medr1_demo.scan.reader import load_scan, open_scan, open_upload
    scan = load_scan("/tmp/upload", window="lung")   # one picture: scan.image is what the model sees
    opened = open_scan("/tmp/upload")                # read once, then any frame and window:
    scan = opened.picture(frame=2, window="bone")     # (the page keeps `opened` per upload)
    found = open_upload(["/tmp/a", "/tmp/b"])        # several files or one ZIP: an OpenedScan,
    if isinstance(found, SeriesChoice):              # or a choice when it holds several series
        opened = found.open(0)                        # (found.labels describe them safely)
    opened.picture(frame=40, window="lung", plane="coronal")   # a volume: any slice and plane

Tests: `.venv/bin/python -m pytest tests/test_imaging.py tests/test_series.py -q`; timings:
`benchmarks/bench_imaging.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from medr1_demo.scan.archive import FileSource, ZipSource
from medr1_demo.scan.dicom import open_dicom
from medr1_demo.scan.formats import DICOM, HEAD_BYTES, NIFTI, NIFTI_PAIR, ZIP
from medr1_demo.scan.formats import sniff as _sniff
from medr1_demo.scan.nifti import open_nifti
from medr1_demo.scan.pictures import open_picture
from medr1_demo.scan.series import SeriesChoice, survey
from medr1_demo.scan.types import (
    PLANES,
    OpenedScan,
    Scan,
    ScanError,
    check_frame,
    check_window,
    refusals,
)
from medr1_demo.scan.volume import DEFAULT_MAX_VOXELS
from medr1_demo.scan.windowing import AUTO, CT_WINDOWS, WINDOW_CHOICES

__all__ = [
    "CT_WINDOWS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_VOXELS",
    "PLANES",
    "WINDOW_CHOICES",
    "OpenedScan",
    "Scan",
    "ScanError",
    "SeriesChoice",
    "load_scan",
    "open_scan",
    "open_upload",
]

DEFAULT_MAX_PIXELS = 64_000_000  # per frame

NOT_AN_IMAGE = (
    "This file is not a scan this app can read. Upload a DICOM file or a PNG, JPEG, TIFF, BMP "
    "or WebP image, a ZIP of DICOM files, or a NIfTI volume."
)
NIFTI_PAIR_HALF = (
    "This is the header half of a NIfTI .hdr/.img pair, which cannot be read on its own. "
    "Convert it to a single .nii or .nii.gz file and upload that."
)


# ------------------------------------------------------------------------------------ entry
def open_scan(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> OpenedScan:
    """Read the upload at `path` (format from its content): header checked, pixels in memory.

    `max_pixels` caps the pixels of one frame and `max_voxels` the values of a volume, both
    checked from the headers before decoding. A ZIP holding several series is refused with a
    sentence naming them (`open_upload` offers the choice instead). Raises ScanError, and
    nothing else, for anything that cannot be shown; so does `picture`.
    """
    with refusals():
        path = Path(path)
        kind, head = _kind(path)
        if kind == DICOM:
            return open_dicom(path, head, max_pixels)
        if kind == ZIP:
            found = survey(partial(ZipSource, path), max_pixels=max_pixels, max_voxels=max_voxels)
            return found.open(None)
        if kind == NIFTI:
            return open_nifti(path, head, max_voxels)
        if kind == NIFTI_PAIR:
            raise ScanError(NIFTI_PAIR_HALF, "not_image")
        return open_picture(path, kind, max_pixels)


def open_upload(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    series: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> OpenedScan | SeriesChoice:
    """One upload of one or several files: an OpenedScan, or a SeriesChoice to pick from.

    One file is read as `open_scan` reads it, except that a ZIP holding several series gives a
    SeriesChoice; several files are DICOM files of one or more series (others are skipped and
    counted in a note). `series` (0-based, as in SeriesChoice.labels) opens that series at once.
    """
    with refusals():
        paths = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
        if not paths:
            raise ScanError("Upload a scan first.", "missing")
        if len(paths) == 1:
            kind = _kind(paths[0])[0]
            if kind != ZIP:
                if series not in (None, 0):
                    raise ScanError(
                        "This upload holds one scan, so only series 0 exists.", "series"
                    )
                return open_scan(paths[0], max_pixels=max_pixels, max_voxels=max_voxels)
            found = survey(
                partial(ZipSource, paths[0]), max_pixels=max_pixels, max_voxels=max_voxels
            )
        else:
            if any(_sniff(_head(p)) in (ZIP, NIFTI, NIFTI_PAIR) for p in paths):
                raise ScanError(
                    "Upload a ZIP or a NIfTI volume on its own, not together with other files.",
                    "mixed_upload",
                )
            found = survey(partial(FileSource, paths), max_pixels=max_pixels, max_voxels=max_voxels)
        if series is None and len(found) > 1:
            return found
        return found.open(series)


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(HEAD_BYTES)
    except OSError:
        raise ScanError("The uploaded file could not be opened.", "missing") from None


def _kind(path: Path) -> tuple[str, bytes]:
    """(the upload's format, its first bytes), or ScanError when it cannot be read as a scan."""
    head = _head(path)
    if not head:
        raise ScanError("The uploaded file is empty. Please upload the scan again.", "empty")
    kind = _sniff(head)
    if kind is None:
        raise ScanError(NOT_AN_IMAGE, "not_image")
    return kind, head


def load_scan(
    path: str | os.PathLike,
    *,
    frame: int | None = None,
    window: str = AUTO,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Scan:
    """Read the upload at `path` and return the model's picture of one frame.

    `frame` is 0-based (default: the middle frame); `window` is one of WINDOW_CHOICES;
    `max_pixels` caps the pixels of one frame, checked from the header before decoding.
    Raises ScanError, and nothing else, for anything that cannot be shown.
    """
    choice, index = check_window(window), check_frame(frame)  # before the file is read
    return open_scan(path, max_pixels=max_pixels).picture(index, choice)
