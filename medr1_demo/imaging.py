"""Scan ingestion: an uploaded file becomes the 8-bit RGB picture the model sees, plus safe metadata.

Uploads arrive as temporary files whose names mean nothing, so the format is read from the bytes:
DICOM (with or without the 128-byte preamble) or a PNG, JPEG, TIFF, BMP or WebP picture. DICOM
files go to `medr1_demo.dicom` (pydicom's LUT pipeline, allow-listed metadata); plain pictures are
read here with Pillow, 16-bit and float grey ones windowed like DICOM. Only one frame is decoded.

This module is the public entry point: `load_scan`, `Scan`, `ScanError`, `WINDOW_CHOICES`,
`CT_WINDOWS`, `DEFAULT_MAX_PIXELS`. Only allow-listed header fields leave it: names, IDs, dates,
institutions and free text never do, not even inside error messages or pydicom's log lines.
Every refusal is a `ScanError` whose message a clinician can read.

    from medr1_demo.imaging import load_scan
    scan = load_scan("/tmp/upload", window="lung")   # scan.image is what the model sees

Tests: `.venv/bin/python -m pytest tests/test_imaging.py -q`; timings: `benchmarks/bench_imaging.py`.
"""

from __future__ import annotations

import logging
import operator
import os
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from struct import unpack

import numpy as np
from PIL import Image, ImageOps

from medr1_demo.dicom import load_dicom
from medr1_demo.scans import (
    AUTO,
    CT_WINDOWS,
    FULL_RANGE,
    WINDOW_CHOICES,
    Scan,
    ScanError,
    check_choice,
    check_size,
    computed_window,
    frame_index,
    to_uint8,
)

__all__ = ["CT_WINDOWS", "DEFAULT_MAX_PIXELS", "WINDOW_CHOICES", "Scan", "ScanError", "load_scan"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 64_000_000  # per frame

_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF", b"II+\x00": "TIFF", b"MM\x00+": "TIFF", b"BM": "BMP"}  # fmt: skip
_PIL_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "TIFF": "TIFF", "BMP": "BMP", "WebP": "WEBP"}
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)

NOT_AN_IMAGE = (
    "This file is not a scan this app can read. Upload a DICOM file or a PNG, JPEG, TIFF, BMP "
    "or WebP image."
)


# ----------------------------------------------------------------------------- quiet libraries
# pydicom's warnings and log lines quote element values (a malformed birth date, an overlong
# name) and TIFF debug logs quote tag text; while a scan loads in this thread they are dropped.
_LOADING = threading.local()


class _LoadingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_LOADING, "active", False)


for _name in ("pydicom", "PIL.TiffImagePlugin"):
    logging.getLogger(_name).addFilter(_LoadingFilter())


@contextmanager
def _quiet():
    _LOADING.active = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _LOADING.active = False


# ------------------------------------------------------------------------------------ entry
def load_scan(
    path: str | os.PathLike,
    *,
    frame: int | None = None,
    window: str = AUTO,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Scan:
    """Read the upload at `path` (format from its content) and return the model's picture.

    `frame` is 0-based (default: the middle frame); `window` is one of WINDOW_CHOICES;
    `max_pixels` caps the pixels of one frame, checked from the header before decoding.
    Raises ScanError, and nothing else, for anything that cannot be shown.
    """
    choice = str(window or AUTO).strip().lower()
    if choice not in WINDOW_CHOICES:
        raise ScanError(
            f"Unknown window '{str(window)[:40]}'. Choose one of: {', '.join(WINDOW_CHOICES)}.",
            "window",
        )
    if frame is not None:  # an int or a numpy integer; never a float or a bool
        if isinstance(frame, bool) or not hasattr(frame, "__index__"):
            raise ScanError("The frame must be a whole number (0 is the first frame).", "frame")
        frame = operator.index(frame)
    try:
        with _quiet():
            path = Path(path)
            try:
                with open(path, "rb") as f:
                    head = f.read(2048)
            except OSError:
                raise ScanError("The uploaded file could not be opened.", "missing") from None
            if not head:
                raise ScanError(
                    "The uploaded file is empty. Please upload the scan again.", "empty"
                )
            kind = _sniff(head)
            if kind is None:
                raise ScanError(NOT_AN_IMAGE, "not_image")
            if kind == "DICOM":
                return load_dicom(path, head, frame, choice, max_pixels)
            return _load_picture(path, kind, frame, choice, max_pixels)
    except ScanError:
        raise
    except MemoryError:
        raise ScanError("This scan is too large to open in memory.", "too_large") from None
    except Exception as exc:  # a library's message may quote header values: never pass it on
        logger.debug("scan unreadable: %s", type(exc).__name__)
        raise ScanError(
            "This file could not be read as a scan: it may be damaged or use an unusual format.",
            "unreadable",
        ) from None


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


# --------------------------------------------------------------------------- plain pictures
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _load_picture(path: Path, kind: str, frame, choice: str, max_pixels: int) -> Scan:
    try:  # the size comes from the header alone; pixels are decoded only after the checks
        image = Image.open(path, formats=[_PIL_FORMATS[kind]])
    except Image.DecompressionBombError:
        raise ScanError("This image is too large to open safely.", "too_large") from None
    except Exception:
        raise ScanError(f"This {kind} file is damaged and cannot be opened.", "damaged") from None
    with image:
        frames = max(1, int(getattr(image, "n_frames", 1)))
        index = frame_index(frame, frames)
        try:
            if index:
                image.seek(index)
            check_size(*image.size, max_pixels)
            image.load()
        except ScanError:
            raise
        except Exception:
            raise ScanError(
                f"This {kind} file is damaged or cut short and cannot be read.", "damaged"
            ) from None
        mode = image.mode
        try:
            image = ImageOps.exif_transpose(image)  # phone photos: stored sideways, tagged
        except Exception:  # unreadable EXIF: keep the picture as stored
            image = image.copy()
    windowable = mode in _HIGH_DEPTH_MODES
    applicable = (AUTO, FULL_RANGE)
    check_choice(choice, applicable, f"{kind} picture")
    label = None
    if windowable:  # 16-bit / float grey: keep the full range until the window is applied
        gray, label = computed_window(np.asarray(image).astype(np.float64), choice)
        rgb = Image.fromarray(to_uint8(gray), "L").convert("RGB")
    elif mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        # Transparent margins go black: scans are shown on black, so padding matches the scan.
        rgba = image.convert("RGBA")
        rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        rgb = rgb.convert("RGB")
    else:
        rgb = image.convert("RGB")  # L, 1, P, CMYK, YCbCr...
    metadata = {"Format": kind, "Width": str(rgb.width), "Height": str(rgb.height)}
    metadata.update({"Frames": str(frames), "Colour mode": mode})
    if label:
        metadata["Window"] = label
    choices = applicable if windowable else (AUTO,)
    return Scan(rgb, kind, frames, index, label, metadata, (), False, windowable, choices)
