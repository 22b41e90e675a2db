"""Scan ingestion: an uploaded file becomes the 8-bit RGB picture the model sees, plus safe metadata.

Uploads arrive as temporary files whose names mean nothing, so the format is read from the bytes:
DICOM (with or without the 128-byte preamble) or a PNG, JPEG, TIFF, BMP or WebP picture. DICOM
files go to `medr1_demo.scan.dicom` (pydicom's LUT pipeline, allow-listed metadata), plain
pictures to `medr1_demo.scan.pictures`. Only allow-listed header fields leave them: names, IDs,
dates, institutions and free text never do, not even inside error messages or pydicom's log lines.
Every refusal is a `ScanError` whose message a clinician can read.

Two entry points:

    from medr1_demo.scan.reader import load_scan, open_scan
    scan = load_scan("/tmp/upload", window="lung")   # one picture: scan.image is what the model sees
    opened = open_scan("/tmp/upload")                # read once, then any frame and window:
    scan = opened.picture(frame=2, window="bone")     # (the page keeps `opened` per upload)

Tests: `.venv/bin/python -m pytest tests/test_imaging.py -q`; timings: `benchmarks/bench_imaging.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from struct import unpack

from medr1_demo.scan.dicom import open_dicom
from medr1_demo.scan.pictures import open_picture
from medr1_demo.scan.types import OpenedScan, Scan, ScanError, check_frame, check_window, refusals
from medr1_demo.scan.windowing import AUTO, CT_WINDOWS, WINDOW_CHOICES

__all__ = [
    "CT_WINDOWS",
    "DEFAULT_MAX_PIXELS",
    "WINDOW_CHOICES",
    "OpenedScan",
    "Scan",
    "ScanError",
    "load_scan",
    "open_scan",
]

DEFAULT_MAX_PIXELS = 64_000_000  # per frame

_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF", b"II+\x00": "TIFF", b"MM\x00+": "TIFF", b"BM": "BMP"}  # fmt: skip
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)

NOT_AN_IMAGE = (
    "This file is not a scan this app can read. Upload a DICOM file or a PNG, JPEG, TIFF, BMP "
    "or WebP image."
)


# ------------------------------------------------------------------------------------ entry
def open_scan(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> OpenedScan:
    """Read the upload at `path` (format from its content): header checked, pixels in memory.

    `max_pixels` caps the pixels of one frame, checked from the header before decoding. Raises
    ScanError, and nothing else, for anything that cannot be shown; so does `picture`.
    """
    with refusals():
        path = Path(path)
        try:
            with open(path, "rb") as f:
                head = f.read(2048)
        except OSError:
            raise ScanError("The uploaded file could not be opened.", "missing") from None
        if not head:
            raise ScanError("The uploaded file is empty. Please upload the scan again.", "empty")
        kind = _sniff(head)
        if kind is None:
            raise ScanError(NOT_AN_IMAGE, "not_image")
        if kind == "DICOM":
            return open_dicom(path, head, max_pixels)
        return open_picture(path, kind, max_pixels)


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


def _sniff(head: bytes) -> str | None:
    if head[128:132] == b"DICM":  # checked first: a DICOM preamble may itself hold a TIFF header
        return "DICOM"
    for signature, kind in _SIGNATURES.items():
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if len(head) >= 8:  # a DICOM dataset without preamble starts with a group 0002 or 0008 tag
        for order in "<>":
            group, element = unpack(order + "HH", head[:4])
            explicit = head[4:6] in _VRS
            implicit = order == "<" and unpack("<I", head[4:8])[0] < 4096
            if group in (0x0002, 0x0008) and element < 0x0100 and (explicit or implicit):
                return "DICOM"
    return None
