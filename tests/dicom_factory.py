"""Small real DICOM files for tests, written by pydicom the way a scanner's export writes them.

    from dicom_factory import make_dicom
    make_dicom(tmp_path / "ct", hu + 1024, Modality="CT", RescaleIntercept=-1024, RescaleSlope=1)

`pixels` is a numpy array: (rows, cols) or (frames, rows, cols) for grey, (rows, cols, 3) or
(frames, rows, cols, 3) with photometric="RGB"; None writes a dataset without pixel data (an
SR-like object). Keyword tags are set last, so they can also contradict the pixels on purpose
(e.g. Rows=60000 over a tiny image). Used by tests/test_imaging.py and other tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage, "SR": BasicTextSRStorage}


def make_dicom(
    path: str | Path,
    pixels: np.ndarray | None = None,
    *,
    photometric: str | None = None,
    bits_stored: int | None = None,
    preamble: bool = True,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    compress: UID | None = None,
    **tags,
) -> Path:
    """Write a DICOM file at `path` and return the path.

    photometric: defaults to MONOCHROME2 (RGB when the last axis has 3 samples).
    bits_stored: defaults to the array's item size in bits.
    preamble: False writes no 128-byte preamble and no 'DICM' prefix (the file starts with the
        File Meta group), as some older exporters do.
    transfer_syntax: how the dataset is encoded (e.g. Deflated Explicit VR Little Endian).
    compress: encode the pixels with pydicom's encoders (RLE Lossless, JPEG 2000 Lossless...).
    """
    path = Path(path)
    modality = tags.get("Modality", "OT")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = SOP_CLASSES.get(modality, SecondaryCaptureImageStorage)
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    if pixels is not None:
        pixels = np.asarray(pixels)
        if photometric is None:
            photometric = "RGB" if pixels.ndim >= 3 and pixels.shape[-1] == 3 else "MONOCHROME2"
        bits = bits_stored or pixels.dtype.itemsize * 8
        ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
        if compress is not None:
            ds.compress(compress, generate_instance_uid=False)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    meta = ds.file_meta
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if compress is None:
        meta.TransferSyntaxUID = transfer_syntax
    if preamble:
        ds.preamble = b"\x00" * 128
    dcmwrite(path, ds, enforce_file_format=preamble)
    return path


def ramp(rows: int = 64, columns: int = 64, high: int = 4095, dtype=np.uint16) -> np.ndarray:
    """A left-to-right ramp from 0 to `high`: every column a different grey."""
    line = np.linspace(0, high, columns).round().astype(dtype)
    return np.repeat(line[None, :], rows, axis=0)
