"""DICOM series: the files of one upload (several files or one ZIP) grouped, ordered and offered.

`survey` reads every file's header (the first bytes only, unless the header is longer) and
groups the DICOM images by SeriesInstanceUID; a multi-frame file is a series of its own. Files
that are not DICOM, DICOM objects without an image (reports, structure sets) and unreadable
files are skipped and counted in plain notes; DICOMDIR indexes are skipped silently. The UIDs
only group files: they, names, dates and descriptions never leave this module. Each series is
described by safe facts only: modality, series number, slice count and orientation.

Slices are ordered by their position along the slice normal (ImagePositionPatient projected on
the cross product of ImageOrientationPatient's two directions), so file names, upload order and
InstanceNumber do not matter and an oblique series orders as well as an axial one; without
usable geometry they are ordered by InstanceNumber. `medr1_demo.scan.stack` then builds a
`Volume` (consistent geometry: three planes) or a slice-by-slice `SliceStack` (with a note).

    choice = survey(lambda: ZipSource(path))     # SeriesChoice: .labels, .notes, .open(i)
    opened = choice.open(0)                       # Volume, SliceStack or DicomFile

Tests: `.venv/bin/python -m pytest tests/test_series.py -q`.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydicom import dcmread
from pydicom.tag import Tag

from medr1_demo.scan.archive import MEMBER_HEAD_BYTES, Source
from medr1_demo.scan.dicom import TAG_COLUMNS, TAG_MODALITY, TAG_ROWS, _code, _value
from medr1_demo.scan.formats import DICOM, HEAD_BYTES, sniff
from medr1_demo.scan.stack import SliceFacts, open_group
from medr1_demo.scan.types import OpenedScan, ScanError
from medr1_demo.scan.volume import DEFAULT_MAX_VOXELS, normal_plane, orientation_label

TAG_SERIES_UID = Tag("SeriesInstanceUID")  # grouping only: never shown, logged or kept in a Scan
TAG_SERIES_NUMBER = Tag("SeriesNumber")
TAG_INSTANCE_NUMBER = Tag("InstanceNumber")
TAG_POSITION = Tag("ImagePositionPatient")
TAG_ORIENTATION = Tag("ImageOrientationPatient")
TAG_PIXEL_SPACING = Tag("PixelSpacing")
TAG_NUMBER_OF_FRAMES = Tag("NumberOfFrames")
TAG_SAMPLES_PER_PIXEL = Tag("SamplesPerPixel")
TAG_PHOTOMETRIC = Tag("PhotometricInterpretation")
TAG_MEDIA_SOP_CLASS = Tag("MediaStorageSOPClassUID")
TAG_TRANSFER_SYNTAX = Tag("TransferSyntaxUID")
DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory (DICOMDIR)
DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"
# The pixel data tag as it appears in either byte order: the header ends there.
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00", b"\x7f\xe0\x00\x10")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@dataclass
class Skipped:
    """What a survey skipped, counted by why (never by name)."""

    not_dicom: int = 0
    no_image: int = 0
    unreadable: int = 0
    unsafe: int = 0

    def notes(self) -> tuple[str, ...]:
        out = []
        if self.not_dicom:
            were = (
                "is not a DICOM image and was"
                if self.not_dicom == 1
                else "are not DICOM images and were"
            )
            out.append(f"{_count(self.not_dicom, 'file', 'files')} in the upload {were} skipped.")
        if self.no_image:
            hold = "holds" if self.no_image == 1 else "hold"
            out.append(
                f"{_count(self.no_image, 'DICOM file', 'DICOM files')} {hold} no image (e.g. a "
                f"report or structure set) and {'was' if self.no_image == 1 else 'were'} skipped."
            )
        if self.unreadable:
            could = (
                "could not be read and was"
                if self.unreadable == 1
                else "could not be read and were"
            )
            out.append(f"{_count(self.unreadable, 'file', 'files')} {could} skipped.")
        if self.unsafe:
            out.append(
                f"{_count(self.unsafe, 'file', 'files')} with an unsafe name (a path leading out "
                f"of the ZIP's folder) {'was' if self.unsafe == 1 else 'were'} skipped."
            )
        return tuple(out)


class SeriesChoice:
    """The series of one upload: `labels` to choose from, `open(i)` for the chosen one.

    The upload is read again on `open` (its source reopened): only the chosen series is decoded.
    """

    def __init__(self, reopen: Callable[[], Source], groups, notes, max_pixels, max_voxels):
        self._reopen, self._groups = reopen, groups
        self.notes = tuple(notes)
        self.max_pixels, self.max_voxels = max_pixels, max_voxels
        self.labels = tuple(f"{i + 1}. {describe(group)}" for i, group in enumerate(groups))

    def __len__(self) -> int:
        return len(self._groups)

    @property
    def nbytes(self) -> int:
        return 256 * sum(len(group) for group in self._groups)  # the header facts kept

    def open(self, index: int | None = None) -> OpenedScan:
        """The chosen series (0-based; None only when there is one), decoded; ScanError else."""
        if index is None and len(self._groups) > 1:
            raise ScanError(
                f"This upload holds {len(self._groups)} series; choose one: "
                + "; ".join(self.labels)
                + ".",
                "choose_series",
            )
        index = 0 if index is None else index
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise ScanError("The series must be a whole number (0 is the first).", "series")
        if not 0 <= index < len(self._groups):
            raise ScanError(
                f"This upload holds {_count(len(self._groups), 'series', 'series')}, so series "
                f"{index} does not exist (they are numbered 0 to {len(self._groups) - 1}).",
                "series",
            )
        source = self._reopen()
        try:
            return open_group(
                source, self._groups[index], self.notes, self.max_pixels, self.max_voxels
            )
        finally:
            source.close()


def describe(group: list[SliceFacts]) -> str:
    """A series' label from safe facts only: modality, series number, slices, orientation."""
    first = group[0]
    modality = Counter(f.modality for f in group).most_common(1)[0][0] or "DICOM"
    parts = [modality]
    if first.number is not None:
        parts.append(f"series {first.number}")
    if first.frames > 1:
        parts.append(_count(first.frames, "frame", "frames"))
    else:
        parts.append(_count(len(group), "slice", "slices"))
    orientations = {f.orientation for f in group}
    if None not in orientations and len(orientations) == 1:
        row, column = np.array(first.orientation[:3]), np.array(first.orientation[3:])
        parts.append(orientation_label(*normal_plane(np.cross(row, column))))
    elif len(orientations) > 1:
        parts.append("mixed orientations")
    return ", ".join(parts)


def survey(
    reopen: Callable[[], Source],
    *,
    max_pixels: int,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> SeriesChoice:
    """Every DICOM image of the upload grouped into series; ScanError if there is none."""
    source = reopen()
    try:
        skipped = Skipped(unreadable=source.unreadable, unsafe=source.unsafe)
        groups: dict[object, list[SliceFacts]] = {}
        for member in range(len(source)):
            facts = _facts(source, member, skipped)
            if facts is not None:
                key = ("frames", member) if facts.frames > 1 else ("series", facts.series)
                groups.setdefault(key, []).append(facts)
        total = len(source) + source.unsafe + source.unreadable
        what = "ZIP" if source.from_zip else "upload"
    finally:
        source.close()
    if not groups:
        if not total:
            raise ScanError(f"This {what} holds no files.", "empty")
        reasons = " ".join(skipped.notes())
        raise ScanError(f"This {what} holds no DICOM images. {reasons}", "no_dicom")
    ordered = sorted(
        groups.values(),
        key=lambda g: (g[0].number is None, g[0].number or 0, -len(g), g[0].modality),
    )
    return SeriesChoice(reopen, ordered, skipped.notes(), max_pixels, max_voxels)


def _facts(source: Source, member: int, skipped: Skipped) -> SliceFacts | None:
    """One file's grouping and ordering facts, or None (counted in `skipped`) if not an image."""
    try:
        head = source.head(member)
    except ScanError as error:
        if error.reason == "zip_bomb":
            raise
        skipped.unreadable += 1
        return None
    if sniff(head[:HEAD_BYTES]) != DICOM:
        skipped.not_dicom += 1
        return None
    try:
        complete = len(head) < MEMBER_HEAD_BYTES or any(tag in head for tag in _PIXEL_TAGS)
        data = head if complete else source.read(member)  # a header longer than the head
        ds = dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        meta = getattr(ds, "file_meta", None)
        if meta is not None and str(_value(meta, TAG_MEDIA_SOP_CLASS, "")) == DIRECTORY_SOP_CLASS:
            return None  # a DICOMDIR index: the images it lists are read directly
        syntax = str(_value(meta, TAG_TRANSFER_SYNTAX, "")) if meta is not None else ""
        if _value(ds, TAG_ROWS) is None or _value(ds, TAG_COLUMNS) is None:
            skipped.no_image += 1
            return None
        if syntax == DEFLATED_SYNTAX and source.from_zip:  # its own inflation is unbounded here
            skipped.unreadable += 1
            return None
        return SliceFacts(
            member=member,
            series=str(_value(ds, TAG_SERIES_UID, "")),
            number=_integer(_value(ds, TAG_SERIES_NUMBER)),
            modality=_code(_value(ds, TAG_MODALITY)) or "",
            rows=int(_value(ds, TAG_ROWS)),
            columns=int(_value(ds, TAG_COLUMNS)),
            frames=max(1, _integer(_value(ds, TAG_NUMBER_OF_FRAMES)) or 1),
            grey=int(_value(ds, TAG_SAMPLES_PER_PIXEL, 1)) == 1
            and str(_value(ds, TAG_PHOTOMETRIC, "")).strip().upper()
            in ("MONOCHROME1", "MONOCHROME2"),
            spacing=_floats(_value(ds, TAG_PIXEL_SPACING), 2),
            orientation=_floats(_value(ds, TAG_ORIENTATION), 6),
            position=_floats(_value(ds, TAG_POSITION), 3),
            instance=_integer(_value(ds, TAG_INSTANCE_NUMBER)),
        )
    except ScanError:
        raise
    except Exception:  # a damaged header: skipped, counted, never quoted
        skipped.unreadable += 1
        return None


def _integer(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _floats(value, count: int) -> tuple[float, ...] | None:
    """`count` finite numbers from a multi-valued element, else None."""
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not np.isfinite(numbers).all():
        return None
    return numbers
