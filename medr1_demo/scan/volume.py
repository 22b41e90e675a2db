"""A decoded volume (a consistent DICOM series or a NIfTI file): any slice of any plane as a picture.

The volume is decoded once, when the upload is opened, into float32 values with the modality
LUT applied (Hounsfield units for CT) and kept, so moving the slice slider or changing the plane
or window only cuts, windows and resizes one slice. The number of values is bounded before
anything is decoded (`check_voxels`).

Orientation. The stored array is turned (axes swapped and flipped, never resampled) to the
closest patient orientation with nibabel's `io_orientation`, so any series or NIfTI file, in
RAS, LPS or an oblique acquisition, is held as [inferior -> superior, anterior -> posterior,
right -> left] and shown the way radiology viewers show it:
  axial     slice 0 is the most inferior; anterior at the top, the patient's right on the left
  coronal   slice 0 is the most anterior; superior at the top, the patient's right on the left
  sagittal  slice 0 is the most rightward; superior at the top, anterior on the left
Each picture is resized so its pixels are square in millimetres (a coronal cut through 5 mm
slices of 0.7 mm pixels is stretched 5/0.7 in height), so a reformatted plane is not squashed.

Windows are the series', not the slice's: "auto" is the file's window (CT) or a percentile window
of the whole volume, "full range" its minimum to maximum, so a slice's grey levels do not jump
while scrolling. CT presets apply on every plane when the values are Hounsfield units.

    volume = Volume(values, affine, kind="NIfTI", hounsfield=False, metadata={...})
    volume.picture(frame=40, window="auto", plane="coronal").image

Tests: `.venv/bin/python -m pytest tests/test_series.py -q`; timings: `benchmarks/bench_imaging.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import io_orientation
from PIL import Image

from medr1_demo.scan.types import (
    AXIAL,
    CORONAL,
    PLANES,
    SAGITTAL,
    OpenedScan,
    Scan,
    ScanError,
    check_choice,
    frame_index,
)
from medr1_demo.scan.windowing import (
    AUTO,
    CT_WINDOWS,
    FULL_RANGE,
    PERCENTILES,
    WINDOW_CHOICES,
    apply_window,
    computed_window,
    readable_number,
    to_uint8,
)

DEFAULT_MAX_VOXELS = 1 << 27  # 134 M values (512 MiB of float32): a 512 x 512 x 512 CT
MAX_SIDE = 2048  # longest side of a picture that had to be stretched to square pixels
SAMPLE_VALUES = 1 << 20  # values a series window is computed from (an even subsample)
OBLIQUE_DEGREES = 10.0  # slices tilted more than this from every patient plane are "oblique"
LINEAR = "LINEAR_EXACT"  # computed windows map their span exactly onto 0..255
_AS_STORED = {0: [[2, 1], [1, 1], [0, 1]], 2: [[0, 1], [1, 1], [2, 1]]}  # slice axis -> S
_WORLD_PLANE = {2: AXIAL, 1: CORONAL, 0: SAGITTAL}  # LPS axis a slice normal points along


@dataclass(frozen=True)
class Geometry:
    """Where the voxels are: spacing of the turned array, and how the slices were acquired."""

    spacing: tuple[float, float, float]  # mm between voxel centres: superior, posterior, left
    acquired: str  # the plane nearest the stored slices: axial, coronal or sagittal
    tilt: float  # degrees between the stored slices and that plane (0: not oblique)


def check_voxels(count: int, max_voxels: int, what: str) -> None:
    """Refuse, before decoding, a volume of more than `max_voxels` values."""
    if count > max_voxels:
        raise ScanError(
            f"This {what} is too large to open here ({count / 1e6:.0f} million values; the limit "
            f"is {max_voxels / 1e6:.0f} million). Upload fewer slices or a thicker reconstruction.",
            "too_large",
        )


def turned(values: np.ndarray, affine: np.ndarray, slice_axis: int):
    """(`values` as [S, P, L] views, Geometry): axes swapped and flipped, never resampled.

    `affine` maps array indices to patient millimetres in DICOM's LPS convention; `slice_axis`
    is the stored slice axis (0 for a DICOM stack, 2 for NIfTI), whose direction names the
    acquisition plane.
    """
    directions = np.nan_to_num(np.asarray(affine, dtype=np.float64)[:3, :3], posinf=0, neginf=0)
    lengths = np.linalg.norm(directions, axis=0)
    flat = ~(lengths > 0)
    if flat.any():  # an axis without a direction (zero spacing): 1 mm along an unclaimed axis
        claimed = {int(np.argmax(np.abs(directions[:, i]))) for i in np.flatnonzero(~flat)}
        free = [axis for axis in range(3) if axis not in claimed]
        for i in np.flatnonzero(flat):
            directions[:, i] = np.eye(3)[free.pop(0)]
        lengths = np.linalg.norm(directions, axis=0)
    ornt = io_orientation(np.vstack([np.column_stack([directions, np.zeros(3)]), [0, 0, 0, 1]]))
    if not np.isfinite(ornt).all():  # directions that do not span space: as stored
        ornt = np.array(_AS_STORED[slice_axis], dtype=float)
    order = [int(np.flatnonzero(ornt[:, 0] == axis)[0]) for axis in (2, 1, 0)]
    flips = tuple(slice(None, None, -1) if ornt[i, 1] < 0 else slice(None) for i in order)
    acquired, tilt = normal_plane(directions[:, slice_axis])
    spacing = tuple(float(lengths[i]) for i in order)
    return values.transpose(order)[flips], Geometry(spacing, acquired, tilt)


def normal_plane(normal) -> tuple[str, float]:
    """(the plane whose slices have this LPS normal, degrees the slices are tilted from it)."""
    normal = np.asarray(normal, dtype=np.float64)
    size = float(np.linalg.norm(normal))
    if not size > 0:
        return AXIAL, 0.0
    cosines = np.abs(normal) / size
    tilt = math.degrees(math.acos(min(1.0, float(cosines.max()))))
    return _WORLD_PLANE[int(np.argmax(cosines))], tilt


def orientation_label(plane: str, tilt: float) -> str:
    """axial / coronal / sagittal, or oblique when tilted past OBLIQUE_DEGREES."""
    return "oblique" if tilt > OBLIQUE_DEGREES else plane


class Volume(OpenedScan):
    """A decoded volume: `picture(slice, window, plane)` for any slice of any offered plane."""

    def __init__(
        self,
        values: np.ndarray,
        affine: np.ndarray,
        *,
        kind: str,
        hounsfield: bool,
        metadata: dict[str, str],
        notes: tuple[str, ...] = (),
        slice_axis: int = 0,
        file_window: tuple[float, float, str] | None = None,
        invert: bool = False,
        burned_in: bool = False,
    ):
        super().__init__()
        self.kind, self.hounsfield, self.invert, self.burned_in = (
            kind,
            hounsfield,
            invert,
            burned_in,
        )
        self.values, self.geometry = turned(values, affine, slice_axis)
        flat = [p for p in PLANES if self.slice_count(p) == 1]
        self.planes = (flat[0],) if flat else PLANES  # one slice is shown in the plane it lies in
        acquired = self.geometry.acquired
        self.default_plane = acquired if acquired in self.planes else self.planes[0]
        self.frame_count = self.slice_count(self.default_plane)
        self.window_choices = WINDOW_CHOICES if hounsfield else (AUTO, FULL_RANGE)
        self.notes = tuple(notes)
        if self.geometry.tilt > 1.0 and len(self.planes) > 1:
            self.notes += (
                f"The slices are tilted {self.geometry.tilt:.0f} degrees from the nearest patient "
                f"plane ({acquired}); the planes shown follow the stored slices, not resampled.",
            )
        self.metadata = dict(metadata)
        self.metadata["Orientation"] = orientation_label(acquired, self.geometry.tilt)
        self._series_windows(file_window)

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def slice_count(self, plane: str) -> int:
        return int(self.values.shape[PLANES.index(plane)])

    def _cut(self, plane: str, index: int) -> np.ndarray:
        """Slice `index` of `plane`, top row first, as the viewer shows it (a view, not a copy)."""
        if plane == AXIAL:
            return self.values[index]
        if plane == CORONAL:
            return self.values[::-1, index, :]  # superior at the top
        return self.values[::-1, :, index]  # sagittal: superior at the top, anterior on the left

    def _pixel_mm(self, plane: str) -> tuple[float, float]:
        """(row spacing, column spacing) of `plane`'s pictures, in mm."""
        s, p, lr = self.geometry.spacing
        return {AXIAL: (p, lr), CORONAL: (s, lr), SAGITTAL: (s, p)}[plane]

    def _series_windows(self, file_window) -> None:
        """The series' "auto" and "full range" windows: one for every slice and plane."""
        values = self.values
        step = max(1, math.ceil((values.size / SAMPLE_VALUES) ** (1 / 3)))
        sample = values[::step, ::step, ::step]
        low, high = float(values.min()), float(values.max())
        full = f"full range of the volume ({readable_number(low)} to {readable_number(high)})"
        self._windows = {FULL_RANGE: (low + (high - low) / 2, max(high - low, 1e-6), full, LINEAR)}
        if file_window is not None:
            centre, width, function = file_window
            label = f"file window (C {readable_number(centre)} / W {readable_number(width)})"
            self._windows[AUTO] = (centre, width, label, function)
        elif not self.hounsfield:
            p_low, p_high = (float(v) for v in np.percentile(sample, PERCENTILES))
            if p_high <= p_low:
                p_low, p_high = low, high
            span = f"{readable_number(p_low)} to {readable_number(p_high)}"
            label = f"percentile {PERCENTILES[0]:g}-{PERCENTILES[1]:g} of the volume ({span})"
            width = max(p_high - p_low, 1e-6)
            self._windows[AUTO] = (p_low + width / 2, width, label, LINEAR)

    def _windowed(self, values: np.ndarray, choice: str) -> tuple[np.ndarray, str]:
        if choice == AUTO and AUTO not in self._windows:  # CT without a file window
            choice = "soft tissue"
        if choice in CT_WINDOWS:
            return computed_window(values, choice)
        centre, width, label, function = self._windows[choice]
        return apply_window(values, centre, width, function), label

    def render_plane(self, index: int | None, choice: str, plane: str | None) -> Scan:
        plane = plane or self.default_plane
        count = self.slice_count(plane)
        slice_index = frame_index(index, count, "slice")
        check_choice(choice, self.window_choices, f"{self.kind} volume")
        cut = self._cut(plane, slice_index)
        gray, label = self._windowed(cut, choice)
        if self.invert:  # MONOCHROME1: after the window, as for one DICOM file
            gray = 255.0 - gray
        picture = square_pixels(Image.fromarray(to_uint8(gray), "L"), *self._pixel_mm(plane))
        metadata = dict(self.metadata)
        metadata.update({"Plane": plane, "Slice": f"{slice_index + 1} of {count}"})
        metadata["Window"] = label
        return Scan(
            picture.convert("RGB"), self.kind, count, slice_index, label, metadata, self.notes,
            self.burned_in, True, self.window_choices, plane, self.planes,
        )  # fmt: skip

    def render(self, index: int | None, choice: str) -> Scan:
        return self.render_plane(index, choice, None)


def square_pixels(picture: Image.Image, row_mm: float, column_mm: float) -> Image.Image:
    """`picture` with its height stretched by row/column spacing, so each pixel is square in mm."""
    ratio = row_mm / column_mm if row_mm > 0 and column_mm > 0 else 1.0
    if abs(ratio - 1.0) < 0.01:
        return picture
    width, height = picture.size
    scale = min(1.0, MAX_SIDE / max(width, height * ratio))
    size = (max(1, round(width * scale)), max(1, round(height * ratio * scale)))
    return picture.resize(size, Image.Resampling.BILINEAR)
