"""One chosen DICOM series decoded: a `Volume` when its geometry is consistent, else a `SliceStack`.

A series becomes a volume (three planes, reformats with square pixels) when every slice is a
single grey frame of one size and pixel spacing, in one orientation, at distinct positions evenly
spaced along the slice normal, stacked straight (no gantry-tilt shear). Otherwise it is browsed
slice by slice as stored (each slice through the single-file DICOM pipeline), with a note that
says why. Every slice is decoded through `DicomFile` (so the same checks, decoders and refusals
apply), its modality LUT applied, and the volume kept as float32; the number of values is checked
against the voxel budget before the first slice is decoded. Metadata come from the middle slice
through the single-file allow-list (`medr1_demo.scan.dicom._dicom_metadata`).

    opened = open_group(source, facts, notes, max_pixels, max_voxels)

Tests: `.venv/bin/python -m pytest tests/test_series.py -q`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
from pydicom import dcmread, pixels

from medr1_demo.scan.archive import FileSource, Source
from medr1_demo.scan.dicom import (
    BURNED_IN,
    TAG_VOI_LUT_FUNCTION,
    TAG_WINDOW_CENTER,
    TAG_WINDOW_WIDTH,
    DicomFile,
    _check_deflated,
    _dicom_metadata,
    _first,
    _value,
)
from medr1_demo.scan.types import OpenedScan, Scan, ScanError, frame_index
from medr1_demo.scan.volume import Volume, check_voxels
from medr1_demo.scan.windowing import readable_number

KIND = "DICOM series"
SAME_COSINE = 1e-3  # orientation cosines that differ by less are one orientation
EVEN_SPACING = 0.2  # a gap may differ from the median gap by this fraction
STRAIGHT_MM = 0.5  # slice origins may stray this far from the stacking line (else: tilt/shear)


@dataclass(frozen=True)
class SliceFacts:
    """One file's header facts for grouping and ordering (no names, no identifiers)."""

    member: int  # the file's number in its Source
    series: str  # SeriesInstanceUID: a grouping key only
    number: int | None  # SeriesNumber
    modality: str
    rows: int
    columns: int
    frames: int
    grey: bool
    spacing: tuple[float, ...] | None  # PixelSpacing: (between rows, between columns) mm
    orientation: tuple[float, ...] | None  # ImageOrientationPatient: row then column direction
    position: tuple[float, ...] | None  # ImagePositionPatient, mm
    instance: int | None  # InstanceNumber


def order(group: list[SliceFacts]) -> tuple[list[SliceFacts], str | None, np.ndarray | None]:
    """(the slices in anatomical order, why they are not one volume or None, slice normal)."""
    orientations = [f.orientation for f in group]
    located = all(o is not None for o in orientations) and all(f.position for f in group)
    same = located and all(
        np.allclose(o, orientations[0], atol=SAME_COSINE, rtol=0) for o in orientations
    )
    if not same:  # no single normal: the scanner's numbering
        ordered = sorted(group, key=lambda f: (f.instance is None, f.instance or 0, f.member))
        why = (
            "some slices do not say where they lie"
            if not located
            else "its slices lie in different orientations"
        )
        return ordered, why, None
    row, column = np.array(orientations[0][:3]), np.array(orientations[0][3:])
    normal = np.cross(row, column)
    along = {f.member: float(np.dot(f.position, normal)) for f in group}
    ordered = sorted(group, key=lambda f: (along[f.member], f.instance or 0, f.member))
    return ordered, _inconsistency(ordered, along, normal), normal


def _inconsistency(ordered: list[SliceFacts], along: dict, normal: np.ndarray) -> str | None:
    first = ordered[0]
    if any((f.rows, f.columns) != (first.rows, first.columns) for f in ordered):
        return "its slices have different sizes"
    if not all(f.grey and f.frames == 1 for f in ordered):
        return "its slices are not all single grey images"
    if first.spacing is None or min(first.spacing) <= 0:
        return "its slices do not give their pixel spacing"
    if any(not np.allclose(f.spacing or (0, 0), first.spacing, rtol=1e-3) for f in ordered):
        return "its slices have different pixel spacings"
    positions = np.array([along[f.member] for f in ordered])
    gaps = np.diff(positions)
    if (gaps <= 1e-3).any():
        return "several slices share one position (e.g. two acquisitions in one series)"
    median = float(np.median(gaps))
    if (np.abs(gaps - median) > EVEN_SPACING * median).any():
        return "its slices are unevenly spaced (a gap or an overlap)"
    origins = np.array([f.position for f in ordered]) - np.array(first.position)
    off_line = origins - np.outer(origins @ normal, normal)
    if (np.linalg.norm(off_line, axis=1) > STRAIGHT_MM).any():
        return "its slices are shifted against each other (e.g. a tilted gantry)"
    return None


def open_group(
    source: Source,
    group: list[SliceFacts],
    notes: tuple[str, ...],
    max_pixels: int,
    max_voxels: int,
) -> OpenedScan:
    """The series `group` of `source` decoded (see the module docstring)."""
    if len(group) == 1:  # one file (maybe multi-frame): the single-file reader, as uploaded alone
        check_voxels(group[0].rows * group[0].columns * group[0].frames, max_voxels, "scan")
        try:
            opened = _dicom_file(source, group[0].member, max_pixels)
        except SliceError as error:
            raise error.cause from None
        return Annotated(opened, notes) if notes else opened
    check_voxels(sum(f.rows * f.columns * f.frames for f in group), max_voxels, "series")
    ordered, why, normal = order(group)
    try:
        if why is None:
            return _volume(source, ordered, normal, notes, max_pixels)
        files = [_dicom_file(source, f.member, max_pixels, k) for k, f in enumerate(ordered)]
    except SliceError as error:  # which slice, then the single-file sentence
        raise ScanError(
            f"Slice {error.index + 1} of {len(ordered)} in this series could not be shown. "
            f"{error.cause}",
            error.cause.reason,
        ) from None
    note = f"This series is shown slice by slice as stored, without other planes: {why}."
    return SliceStack(files, (*notes, note))


class SliceError(Exception):
    """A slice's refusal, with the slice's place in the series."""

    def __init__(self, index: int, cause: ScanError):
        super().__init__(str(cause))
        self.index, self.cause = index, cause


def _dicom_file(source: Source, member: int, max_pixels: int, index: int = 0) -> DicomFile:
    try:
        data = source.read(member)
        if isinstance(source, FileSource):  # a deflated dataset's size is bounded first
            _check_deflated(source.paths[member], data[:2048], max_pixels)
        return DicomFile(dcmread(io.BytesIO(data), force=True), max_pixels)
    except ScanError as error:
        if error.reason == "zip_bomb":
            raise
        raise SliceError(index, error) from None


def _volume(source, ordered, normal, notes, max_pixels) -> Volume:
    first, middle = ordered[0], len(ordered) // 2
    values = np.empty((len(ordered), first.rows, first.columns), dtype=np.float32)
    burned_in = False
    for k, facts in enumerate(ordered):
        opened = _dicom_file(source, facts.member, max_pixels, k)
        try:
            opened.check_decoder()
            values[k] = pixels.apply_modality_lut(opened._frame(0), opened.ds)  # e.g. HU for CT
        except ScanError as error:
            raise SliceError(k, error) from None
        burned_in |= opened.burned_in
        if k == middle:  # the series' facts and window come from its middle slice
            shown = opened
    ds = shown.ds
    gaps = np.diff([float(np.dot(f.position, normal)) for f in ordered])
    slice_mm = float(np.median(gaps))
    rows_mm, columns_mm = first.spacing
    row, column = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    affine = np.eye(4)  # array index (slice, row, column) -> patient mm (LPS)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = (
        normal * slice_mm,
        column * rows_mm,
        row * columns_mm,
    )
    metadata = _dicom_metadata(ds, first.rows, first.columns, len(ordered), shown.syntax_name, None)
    metadata.pop("Frames", None)
    metadata["Format"] = KIND
    metadata["Slices"] = str(len(ordered))
    metadata["Slice spacing"] = f"{readable_number(slice_mm)} mm"
    return Volume(
        values, affine, kind=KIND, hounsfield=shown.modality == "CT", metadata=metadata,
        notes=(*notes, *((BURNED_IN,) if burned_in else ())), slice_axis=0,
        file_window=_file_window(ds), invert=shown.photometric == "MONOCHROME1",
        burned_in=burned_in,
    )  # fmt: skip


def _file_window(ds) -> tuple[float, float, str] | None:
    """The middle slice's first window centre/width (the series' "auto"), or None."""
    try:
        centre = float(_first(_value(ds, TAG_WINDOW_CENTER)))
        width = float(_first(_value(ds, TAG_WINDOW_WIDTH)))
    except (TypeError, ValueError):
        return None
    function = str(_value(ds, TAG_VOI_LUT_FUNCTION, "LINEAR")).strip().upper()
    if not (np.isfinite(centre) and np.isfinite(width) and width > 0):
        return None
    return (
        centre,
        width,
        function if function in ("LINEAR", "LINEAR_EXACT", "SIGMOID") else "LINEAR",
    )


class SliceStack(OpenedScan):
    """A series browsed slice by slice: each slice rendered as a single DICOM file would be."""

    kind = KIND

    def __init__(self, files: list[DicomFile], notes: tuple[str, ...]):
        super().__init__()
        self.files, self.notes, self.frame_count = files, tuple(notes), len(files)

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.files)

    def render(self, index: int | None, choice: str) -> Scan:
        count = len(self.files)
        k = frame_index(index, count, "slice")
        scan = self.files[k].render(0, choice)
        metadata = {**scan.metadata, "Format": KIND, "Slices": str(count)}
        metadata.pop("Frames", None)
        metadata["Slice"] = f"{k + 1} of {count}"
        return replace(
            scan, kind=KIND, frame_count=count, frame_index=k, metadata=metadata,
            warnings=(*self.notes, *scan.warnings),
        )  # fmt: skip


class Annotated(OpenedScan):
    """An opened scan whose pictures carry the upload's notes (e.g. files skipped)."""

    def __init__(self, opened: OpenedScan, notes: tuple[str, ...]):
        super().__init__()
        self.opened, self.notes = opened, tuple(notes)
        self.kind, self.frame_count, self.planes = opened.kind, opened.frame_count, opened.planes

    @property
    def nbytes(self) -> int:
        return self.opened.nbytes

    def render_plane(self, index: int | None, choice: str, plane: str | None) -> Scan:
        scan = self.opened.render_plane(index, choice, plane)
        return replace(scan, warnings=(*self.notes, *scan.warnings))
