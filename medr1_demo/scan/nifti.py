"""NIfTI volumes (`.nii`, `.nii.gz`, NIfTI-1 and -2) opened with nibabel into a `Volume`.

The format is read from the content (`medr1_demo.scan.formats`), never from the file name. The
header is read first and the volume's size checked against the voxel budget before any value is
read; a gzip stream is inflated only as far as the header says the first volume reaches.
Intensities are kept as stored, with the header's scl_slope/scl_inter applied; the orientation is
the file's sform (else qform), turned to the viewer's orientation by `medr1_demo.scan.volume`, so
a file stored in RAS and one stored in LPS give the same axial picture. A 4D file (a time series,
diffusion directions) shows its first volume, with a note.

NIfTI has no modality field, and its description is free text (never read here). The CT window
presets are offered when the values look like Hounsfield units (`looks_like_hounsfield`): the
minimum lies between -3100 and -900 (air is -1000; scanners pad outside the field of view with
-1024, -2048 or -3024) and the 99th percentile between -500 and 4000 (soft tissue and bone,
not air alone). MR, PET and normalised volumes (minimum near 0 or a few units below) do not pass.

    from medr1_demo.scan.reader import open_scan
    volume = open_scan("brain.nii.gz")            # a Volume
    volume.picture(frame=None, window="auto", plane="sagittal")

Tests: `.venv/bin/python -m pytest tests/test_series.py -q -k nifti`.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import nibabel as nib
import numpy as np

from medr1_demo.scan.formats import GZIP_SIGNATURE, gunzip_head
from medr1_demo.scan.types import ScanError
from medr1_demo.scan.volume import Volume, check_voxels
from medr1_demo.scan.windowing import readable_number

HU_MINIMUM = (-3100.0, -900.0)  # the lowest value of a CT volume in Hounsfield units
HU_PERCENTILE_99 = (-500.0, 4000.0)
MAX_GZIP_HEADER = 64 << 20  # bytes before the first voxel that a .nii.gz may make us inflate
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

DAMAGED_NIFTI = "This NIfTI file is damaged or cut short, so its volume cannot be read."


def looks_like_hounsfield(minimum: float, percentile_99: float) -> bool:
    """The documented rule for a NIfTI volume's values being CT Hounsfield units."""
    return (
        HU_MINIMUM[0] <= minimum <= HU_MINIMUM[1]
        and HU_PERCENTILE_99[0] <= percentile_99 <= HU_PERCENTILE_99[1]
    )


def open_nifti(path: Path, head: bytes, max_voxels: int) -> Volume:
    """The NIfTI file at `path` (`head`: its first bytes) decoded into a Volume, or ScanError."""
    compressed = head.startswith(GZIP_SIGNATURE)
    header_bytes = gunzip_head(head) if compressed else head
    image_class = nib.Nifti2Image if header_bytes[4:7] == b"n+2" else nib.Nifti1Image
    opener = gzip.open if compressed else open
    with opener(path, "rb") as f:
        holder = nib.FileHolder(fileobj=f)
        try:
            image = image_class.from_file_map({"image": holder, "header": holder})
        except Exception:
            raise ScanError(DAMAGED_NIFTI, "damaged") from None
        header = image.header
        shape = tuple(int(n) for n in image.shape)
        if not 2 <= len(shape) <= 7 or min(shape) < 1:
            raise ScanError(
                "This NIfTI file holds no volume (its dimensions are empty).", "zero_size"
            )
        spatial = (shape + (1,))[:3]
        check_voxels(math.prod(spatial), max_voxels, "NIfTI volume")
        if header.get_data_dtype().kind not in "iuf" or header.get_data_dtype().names:
            raise ScanError(
                "This NIfTI file holds colour or complex values; only grey volumes are shown.",
                "unsupported_colour",
            )
        _check_offset(path, header, compressed, math.prod(spatial))
        first = (
            image.slicer[(slice(None),) * 3 + (0,) * (len(shape) - 3)] if len(shape) > 3 else image
        )
        try:
            values = np.asarray(first.get_fdata(dtype=np.float32), dtype=np.float32)
        except MemoryError:
            raise
        except Exception:
            raise ScanError(DAMAGED_NIFTI, "truncated") from None
    values = values.reshape(spatial, order="A")
    notes = []
    if len(shape) > 3:
        volumes = math.prod(shape[3:])
        notes.append(
            f"This NIfTI file holds {volumes} volumes (e.g. a time series); the first is shown."
        )
    finite = np.isfinite(values)
    if not finite.all():
        if not finite.any():
            raise ScanError(
                "This NIfTI volume holds no numbers (every value is missing).", "damaged"
            )
        values[~finite] = values[finite].min()
        notes.append(
            "Some values in this volume are missing (NaN) and are shown as its lowest value."
        )
    del finite
    codes = int(header["sform_code"]), int(header["qform_code"])
    if not any(codes):
        notes.append(
            "This file does not say how it is oriented in the patient, so the planes assume the "
            "usual orientation and may be mirrored."
        )
    step = max(1, math.ceil((values.size / (1 << 20)) ** (1 / 3)))
    p99 = float(np.percentile(values[::step, ::step, ::step], 99))
    hounsfield = looks_like_hounsfield(float(values.min()), p99)
    zooms = header.get_zooms()[:3]
    axes = nib.aff2axcodes(image.affine)  # None for an axis the affine leaves undefined
    metadata = {
        "Format": "NIfTI-2" if image_class is nib.Nifti2Image else "NIfTI-1",
        "Dimensions": " x ".join(str(n) for n in spatial),
        "Voxel size": " x ".join(readable_number(float(z)) for z in zooms) + " mm",
        "Volumes": str(math.prod(shape[3:])) if len(shape) > 3 else None,
        "Data type": str(header.get_data_dtype()),
        "Stored orientation": "".join(axes) if any(codes) and None not in axes else None,
        "Values": "Hounsfield units (judged from the values)" if hounsfield else "as stored",
    }
    metadata = {label: value for label, value in metadata.items() if value}
    return Volume(
        values, RAS_TO_LPS @ image.affine, kind="NIfTI", hounsfield=hounsfield,
        metadata=metadata, notes=tuple(notes), slice_axis=2,
    )  # fmt: skip


def _check_offset(path: Path, header, compressed: bool, voxels: int) -> None:
    """Refuse a header whose first voxel lies beyond the file (or far into a gzip stream)."""
    try:
        offset = int(header["vox_offset"])
    except (TypeError, ValueError, OverflowError):
        raise ScanError(DAMAGED_NIFTI, "damaged") from None
    needed = offset + voxels * header.get_data_dtype().itemsize
    if compressed:
        if offset > MAX_GZIP_HEADER:
            raise ScanError(DAMAGED_NIFTI, "damaged")
    elif needed > Path(path).stat().st_size:
        raise ScanError(DAMAGED_NIFTI, "truncated")
