"""Grey-level windowing: any grey values (Hounsfield units, 16-bit levels) into 0..255.

Every reader shares these: a CT preset (soft tissue, lung, bone, brain), the full range, or a
percentile window ("auto"), all applied with pydicom's `apply_windowing` so the formula lives in
one place (the phantom DICOM writer and the readers both call `apply_window`).

    from medr1_demo.scan.windowing import computed_window
    gray, label = computed_window(hounsfield_units, "lung")
"""

from __future__ import annotations

import numpy as np
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
