"""Phantom scans as DICOM files, and the 8-bit display a standard viewer would show of them.

`stored_values` quantises phantom pixels the way the DICOM file stores them (CT: HU + 1024 in 12
bits; MRI and X-ray: 12 bits; ultrasound: 8 bits), `display_values` applies the file's linear
window to those stored values (DICOM PS3.3 C.11.2.1.2), and `write_dicom` writes the file. The
PNG of an item is `display_values(stored_values(...))`, so PNG and DICOM show the same picture.

Every file is synthetic and says so: PatientName PHANTOM^DEMO, PatientID PHANTOM-0001, fixed dates,
no institution, BurnedInAnnotation NO, UIDs derived from the generator seed and item id. Used by
`python -m trainer synth`; by hand:

    write_dicom("ct.dcm", "CT", hu_array, uid_key=["0", "ct-000001"], window=(40, 100))
"""

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

from medr1_demo.scan.windowing import apply_window, to_uint8

DICOM_MODALITIES = ("CT", "MRI", "X-Ray", "Ultrasound")
CT_INTERCEPT = -1024  # stored = HU + 1024, the usual CT convention
FULL_RANGE_WINDOW = (2048.0, 4096.0)  # MRI and X-ray: the whole 12-bit range
SYNTHETIC_DATE, SYNTHETIC_TIME = "20000101", "120000"  # fixed: no real acquisition date
FIELD_OF_VIEW_MM = {"CT": 360.0, "MRI": 240.0, "X-Ray": 430.0, "Ultrasound": 160.0}
MODALITY_CODES = {"CT": "CT", "MRI": "MR", "X-Ray": "DX", "Ultrasound": "US"}


def stored_values(modality: str, pixels: np.ndarray) -> np.ndarray:
    """Phantom pixels (HU for CT, else floats in [0, 1]) -> the integers the DICOM file holds."""
    if modality == "CT":
        return np.clip(np.round(pixels - CT_INTERCEPT), 0, 4095).astype(np.uint16)
    if modality in ("MRI", "X-Ray"):
        return np.round(np.clip(pixels, 0, 1) * 4095).astype(np.uint16)
    return np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)


def display_values(modality: str, stored: np.ndarray, window=None) -> np.ndarray:
    """Stored values -> 8-bit display through the DICOM linear window (what the PNG holds).

    The window is the scan reader's own (`medr1_demo.scan.windowing.apply_window`), so the PNG is
    exactly what the app shows of the DICOM file.
    """
    if stored.dtype == np.uint8:
        return stored
    values = stored.astype(np.float64) + (CT_INTERCEPT if modality == "CT" else 0)
    centre, width = window or FULL_RANGE_WINDOW
    return to_uint8(apply_window(values, centre, width, "LINEAR"))


def _uid(key: list[str], part: str) -> str:
    return generate_uid(entropy_srcs=["medr1-synth", *key, part])


def _base(
    modality: str, sop_class: str, key: list[str], body_part: str, description: str
) -> Dataset:
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = _uid(key, "instance")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MEDR1_SYNTH"
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(key, "study"), _uid(key, "series")
    for prefix in ("Study", "Series", "Content"):
        setattr(ds, f"{prefix}Date", SYNTHETIC_DATE)
        setattr(ds, f"{prefix}Time", SYNTHETIC_TIME)
    ds.AccessionNumber = ""
    ds.Modality = MODALITY_CODES[modality]
    ds.Manufacturer = "Med-R1 demo"
    ds.ManufacturerModelName = "Synthetic phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Synthetic phantom"
    ds.SeriesDescription = description[:64]
    ds.PatientName = "PHANTOM^DEMO"
    ds.PatientID = "PHANTOM-0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic phantom, no patient data"
    ds.BodyPartExamined = body_part.upper().replace(" ", "")[:16]
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.BurnedInAnnotation = "NO"
    return ds


def _pixel_spacing(modality: str, size: int) -> list[float]:
    spacing = round(FIELD_OF_VIEW_MM[modality] / size, 4)
    return [spacing, spacing]


def write_dicom(
    path: str | Path,
    modality: str,
    pixels: np.ndarray,
    *,
    uid_key: list[str],
    body_part: str = "",
    window: tuple[float, float] | None = None,
    monochrome1: bool = False,
    description: str = "",
    extra: dict | None = None,
) -> None:
    """Write phantom `pixels` as a DICOM file; UIDs come from `uid_key` (e.g. [seed, item id]).

    CT takes HU as (rows, cols), or (frames, rows, cols) for an Enhanced CT multi-frame object;
    MRI/X-ray take floats in [0, 1]; ultrasound takes floats, grey (MONOCHROME2) or RGB.
    `monochrome1` stores an X-ray inverted (a CR, as many CR readers export them).
    """
    stored = stored_values(modality, pixels)
    multiframe = modality == "CT" and stored.ndim == 3
    if modality == "CT":
        sop = EnhancedCTImageStorage if multiframe else CTImageStorage
    elif modality == "MRI":
        sop = MRImageStorage
    elif modality == "X-Ray":
        sop = (
            ComputedRadiographyImageStorage
            if monochrome1
            else DigitalXRayImageStorageForPresentation
        )
    else:
        sop = UltrasoundImageStorage
    ds = _base(modality, sop, uid_key, body_part, description)
    size = stored.shape[-2] if stored.ndim != 3 or multiframe else stored.shape[0]
    spacing = _pixel_spacing(modality, size)
    if modality in ("CT", "MRI"):
        ds.FrameOfReferenceUID = _uid(uid_key, "frame")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if modality == "CT" else "OTHER"]
        ds.PixelSpacing, ds.SliceThickness = spacing, 5.0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-spacing[0] * size / 2, -spacing[1] * size / 2, 0.0]
        ds.PositionReferenceIndicator = ""
    if modality == "CT":
        ds.KVP, ds.ConvolutionKernel = 120, "STANDARD"
        # Rescale and window stay at the top level too, where single-frame readers look for them.
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = CT_INTERCEPT, 1, "HU"
    if modality in ("CT", "MRI", "X-Ray"):
        centre, width = window or FULL_RANGE_WINDOW
        ds.WindowCenter, ds.WindowWidth = centre, width
        ds.VOILUTFunction = "LINEAR"
    if modality == "X-Ray":
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.ImagerPixelSpacing = ds.PixelSpacing = spacing
        ds.ViewPosition = "PA"
        ds.PatientOrientation = ["L", "F"]  # image right is the patient's left
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
        if monochrome1:  # MONOCHROME1: high stored values are dark
            stored = (4095 - stored).astype(np.uint16)
    if modality == "Ultrasound":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
        if stored.ndim == 2:  # an identity window: viewers show the 8 bits as they are
            ds.WindowCenter, ds.WindowWidth = 128.0, 256.0
    if multiframe:
        _enhanced_ct(ds, stored.shape[0], spacing, size)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    if stored.ndim == 3 and not multiframe:
        photometric = "RGB"
    else:
        photometric = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    bits = 8 if stored.dtype == np.uint8 else 12
    ds.set_pixel_data(stored, photometric, bits, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


def _enhanced_ct(ds: Dataset, frames: int, spacing: list[float], size: int) -> None:
    """The functional groups an Enhanced CT object carries: geometry, rescale and window."""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.ContentQualification = "RESEARCH"
    ds.PresentationLUTShape = "IDENTITY"
    shared = Dataset()
    measures, orientation, rescale, voi = Dataset(), Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = spacing, 5.0
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    rescale.RescaleIntercept, rescale.RescaleSlope, rescale.RescaleType = CT_INTERCEPT, 1, "HU"
    voi.WindowCenter, voi.WindowWidth = ds.WindowCenter, ds.WindowWidth
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelValueTransformationSequence = [rescale]
    shared.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for index in range(frames):
        group, position, content = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [
            -spacing[0] * size / 2,
            -spacing[1] * size / 2,
            5.0 * index,
        ]
        content.InStackPositionNumber = index + 1
        content.DimensionIndexValues = [index + 1]
        group.PlanePositionSequence = [position]
        group.FrameContentSequence = [content]
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    del ds.ImagePositionPatient, ds.PixelSpacing, ds.SliceThickness, ds.ImageOrientationPatient
