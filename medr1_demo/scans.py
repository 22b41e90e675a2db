"""What a loaded scan is, and the checks and grey-level windowing every scan loader shares.

`Scan` (the model's picture plus what may be shown about it) and `ScanError` (a refusal a
clinician can read) are defined here so that both loaders, `medr1_demo.imaging` for plain
pictures and `medr1_demo.dicom` for DICOM files, build and raise the same types. The window
helpers map any grey values (Hounsfield units, 16-bit picture levels) into 0..255 with pydicom's
`apply_windowing`, from a CT preset, the full range or a percentile window.

Import the public names from `medr1_demo.imaging`, which re-exports them:

    from medr1_demo.imaging import Scan, ScanError, WINDOW_CHOICES

Tests: `.venv/bin/python -m pytest tests/test_imaging.py -q`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom import pixels
from pydicom.dataset import Dataset

# Preset -> (centre, width) in Hounsfield units. Bone uses the wide 400/1800 setting so that both
# cortical and trabecular bone keep detail.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
AUTO, FULL_RANGE = "auto", "full range"
WINDOW_CHOICES: tuple[str, ...] = (AUTO, *CT_WINDOWS, FULL_RANGE)
PERCENTILES = (1.0, 99.0)


class ScanError(ValueError):
    """str(err) is one or two sentences a clinician can read; `reason` is a short code for code."""

    def __init__(self, message: str, reason: str = "unreadable"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Scan:
    """A loaded scan: the model's picture and what may be shown about it."""

    image: Image.Image  # 8-bit RGB: exactly what the model sees
    kind: str  # "DICOM", "PNG", "JPEG", "TIFF", "BMP", "WebP"
    frame_count: int
    frame_index: int  # 0-based
    window: str | None  # the window applied, readable; None for plain 8-bit pictures
    metadata: dict[str, str]  # allow-listed, display-ready labels -> values
    warnings: tuple[str, ...]  # plain-words warnings for the page
    burned_in_annotation: bool
    windowable: bool  # a window choice makes sense (grayscale DICOM / 16-bit picture)
    window_choices: tuple[str, ...] = (AUTO,)  # the WINDOW_CHOICES that apply to this scan


# ----------------------------------------------------------------------------------- checks
def frame_index(frame: int | None, count: int) -> int:
    """The 0-based frame to decode: `frame`, or the middle one when it is None."""
    if frame is None:
        return count // 2
    if not 0 <= frame < count:
        plural = "frame" if count == 1 else "frames"
        raise ScanError(
            f"This scan has {count} {plural}, so frame {frame} does not exist "
            f"(frames are numbered 0 to {count - 1}).",
            "frame",
        )
    return frame


def check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ScanError("This image has no pixels (its width or height is zero).", "zero_size")
    if width * height > max_pixels:
        raise ScanError(
            f"This image is too large to open safely ({width} x {height} pixels per frame; the "
            f"limit is {max_pixels / 1e6:g} megapixels).",
            "too_large",
        )


def check_choice(choice: str, applicable: tuple[str, ...], what: str) -> None:
    if choice not in applicable:
        raise ScanError(
            f"The '{choice}' window is a CT preset in Hounsfield units and does not apply to "
            f"this {what}. Choose {' or '.join(repr(c) for c in applicable)}.",
            "window",
        )


# -------------------------------------------------------------------------------- windowing
def apply_window(values: np.ndarray, centre: float, width: float, function: str = "LINEAR_EXACT"):
    """Window `values` into 0..255 with pydicom's apply_windowing (a view dataset fixes the range)."""
    view = Dataset()
    view.PhotometricInterpretation = "MONOCHROME2"  # inversion is applied afterwards
    view.BitsStored, view.PixelRepresentation = 8, 0  # output range 0..255
    view.WindowCenter, view.WindowWidth, view.VOILUTFunction = centre, width, function
    return pixels.apply_windowing(values, view)


def readable_number(x: float) -> str:
    """A readable number for a label: 40, -600, 0.25, 1253010 (never 1.25e+06)."""
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.0f}"


def computed_window(values: np.ndarray, choice: str) -> tuple[np.ndarray, str]:
    """`values` in 0..255 through a CT preset, the full range or (for "auto") a percentile window."""
    if choice in CT_WINDOWS:
        centre, width = CT_WINDOWS[choice]
        label = f"{choice} (C {readable_number(centre)} / W {readable_number(width)})"
        return apply_window(values, centre, width), label
    low, high = float(np.min(values)), float(np.max(values))
    label = f"full range ({readable_number(low)} to {readable_number(high)})"
    if choice != FULL_RANGE:
        # Percentiles of a subsample: the same window within a grey level, several times faster.
        sample = values[:: max(1, values.shape[0] // 256), :: max(1, values.shape[1] // 256)]
        p_low, p_high = (float(v) for v in np.percentile(sample, PERCENTILES))
        if p_high > p_low:
            low, high = p_low, p_high
        span = f"{readable_number(low)} to {readable_number(high)}"
        label = f"percentile {PERCENTILES[0]:g}-{PERCENTILES[1]:g} ({span})"
    width = max(high - low, 1e-6)
    return apply_window(values, low + width / 2, width), label


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
