"""DICOM files: opened once, then any frame becomes the model's 8-bit RGB picture plus safe metadata.

Pixels go through pydicom's own display pipeline in the standard order: modality LUT (Hounsfield
units for CT), the file's VOI LUT or window (else a CT preset or a percentile window), MONOCHROME1
inversion, presentation LUT; YBR and palette colour become RGB. Only the requested frame is
decoded (and kept, so a window change does not decode it again), and a deflated dataset's
inflated size is bounded before pydicom inflates it.

Only allow-listed header elements are read into the result: names, IDs, dates, institutions and
free text never leave this module, not even inside error messages. Every refusal is a
`ScanError` whose message a clinician can read.

`medr1_demo.scan.reader` is the entry point; it sniffs the format, keeps pydicom's log lines
quiet and calls `open_dicom` here:

    from medr1_demo.scan.reader import load_scan, open_scan
    scan = load_scan("/tmp/upload.dcm", window="lung")
    opened = open_scan("/tmp/upload.dcm"); opened.picture(frame=3, window="bone")

Tests: `.venv/bin/python -m pytest tests/test_imaging.py -q`; timings: `benchmarks/bench_imaging.py`.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from struct import unpack

import numpy as np
from PIL import Image
from pydicom import dcmread, pixels
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medr1_demo.scan.budget import heavy_decode, reduce_array, reduction
from medr1_demo.scan.budget import note as budget_note
from medr1_demo.scan.types import OpenedScan, Scan, ScanError, check_choice, check_size, frame_index
from medr1_demo.scan.windowing import (
    AUTO,
    FULL_RANGE,
    WINDOW_CHOICES,
    apply_window,
    computed_window,
    readable_number,
    to_uint8,
)

DEFLATED_BYTES_PER_PIXEL = 8  # inflated-size budget of a deflated DICOM, per allowed pixel

# The DICOM elements this module reads. Everything else (names, IDs, dates...) is never touched.
TAG_TRANSFER_SYNTAX = Tag("TransferSyntaxUID")
TAG_SOP_CLASS = Tag("SOPClassUID")
TAG_MODALITY = Tag("Modality")
TAG_BODY_PART = Tag("BodyPartExamined")
TAG_SLICE_THICKNESS = Tag("SliceThickness")
TAG_IMAGER_PIXEL_SPACING = Tag("ImagerPixelSpacing")
TAG_SAMPLES_PER_PIXEL = Tag("SamplesPerPixel")
TAG_PHOTOMETRIC = Tag("PhotometricInterpretation")
TAG_NUMBER_OF_FRAMES = Tag("NumberOfFrames")
TAG_ROWS = Tag("Rows")
TAG_COLUMNS = Tag("Columns")
TAG_PIXEL_SPACING = Tag("PixelSpacing")
TAG_BITS_ALLOCATED = Tag("BitsAllocated")
TAG_BITS_STORED = Tag("BitsStored")
TAG_BURNED_IN_ANNOTATION = Tag("BurnedInAnnotation")
TAG_WINDOW_CENTER = Tag("WindowCenter")
TAG_WINDOW_WIDTH = Tag("WindowWidth")
TAG_VOI_LUT_FUNCTION = Tag("VOILUTFunction")
TAG_VOI_LUT_SEQUENCE = Tag("VOILUTSequence")
TAG_PRESENTATION_LUT_SEQUENCE = Tag("PresentationLUTSequence")
TAG_PRESENTATION_LUT_SHAPE = Tag("PresentationLUTShape")
PIXEL_DATA_TAGS = (Tag("PixelData"), Tag("FloatPixelData"), Tag("DoubleFloatPixelData"))
REQUIRED_PIXEL_TAGS = (TAG_ROWS, TAG_COLUMNS, TAG_BITS_ALLOCATED, TAG_PHOTOMETRIC)

_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())  # 4-byte lengths
_DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
# Body Part Examined values shown (DICOM PS3.16 CID 4031 defined terms); anything else is left out.
BODY_PARTS = frozenset(
    [
        "ABDOMEN",
        "ANKLE",
        "ARM",
        "BRAIN",
        "BREAST",
        "CHEST",
        "CSPINE",
        "ELBOW",
        "EXTREMITY",
        "EYE",
        "FOOT",
        "HAND",
        "HEAD",
        "HEART",
        "HIP",
        "JAW",
        "KNEE",
        "LEG",
        "LIVER",
        "LSPINE",
        "NECK",
        "PANCREAS",
        "PELVIS",
        "PROSTATE",
        "SHOULDER",
        "SKULL",
        "SPINE",
        "TSPINE",
        "WRIST",
        "WHOLEBODY",
        "KIDNEY",
        "LUNG",
        "SKIN",
        "RETINA",
    ]
)
_CODE = re.compile(r"[A-Z0-9 _]{1,16}")  # a DICOM code string (CS) and nothing else
_NO_IMAGE_KINDS = {"SR": "a structured report", "RTSTRUCT": "a radiotherapy structure set",
                   "RTPLAN": "a radiotherapy plan", "ECG": "a waveform", "KO": "a key-object note",
                   "PR": "a presentation state", "DOC": "a document"}  # fmt: skip

BURNED_IN = (
    "The file says text is burned into the picture, which may include patient identifiers. "
    "Check the picture before sharing it."
)
DAMAGED_DICOM = (
    "This DICOM file is damaged or incomplete, so its image cannot be read. Try exporting the "
    "scan again."
)


# ----------------------------------------------------------------------------------- pixels
class DicomFile(OpenedScan):
    """One opened DICOM file: header checked, pixels read; each frame decoded once, on first use."""

    kind = "DICOM"

    def __init__(self, ds: Dataset, max_pixels: int):
        super().__init__()
        self.ds = ds
        self.modality = _code(_value(ds, TAG_MODALITY)) or ""
        if not any(tag in ds for tag in PIXEL_DATA_TAGS):
            sop = _value(ds, TAG_SOP_CLASS)
            image_sop = sop is not None and "Image" in UID(str(sop)).name
            if not len(ds) or image_sop or _value(ds, TAG_ROWS) is not None:
                raise ScanError(DAMAGED_DICOM, "truncated")  # an image object without its pixels
            what = _NO_IMAGE_KINDS.get(self.modality, "a non-image object")
            raise ScanError(
                f"This DICOM file holds no image: it is {what}. Upload an image series file "
                "instead.",
                "no_image",
            )
        if any(tag not in ds for tag in REQUIRED_PIXEL_TAGS):
            raise ScanError(DAMAGED_DICOM, "damaged")
        try:
            self.rows, self.columns = int(_value(ds, TAG_ROWS, 0)), int(_value(ds, TAG_COLUMNS, 0))
            self.samples = int(_value(ds, TAG_SAMPLES_PER_PIXEL, 1))
            self.frame_count = max(1, int(_value(ds, TAG_NUMBER_OF_FRAMES, 1)))
        except (TypeError, ValueError):
            raise ScanError(DAMAGED_DICOM, "damaged") from None
        check_size(self.columns, self.rows, max_pixels)
        self.photometric = str(_value(ds, TAG_PHOTOMETRIC, "")).strip().upper()
        self.grayscale = self.photometric in ("MONOCHROME1", "MONOCHROME2") and self.samples == 1
        ct = self.modality == "CT" and self.grayscale
        self.window_choices = WINDOW_CHOICES if ct else (AUTO, FULL_RANGE)
        self.syntax = _transfer_syntax(ds)
        # Only a transfer syntax pydicom knows is named; an unknown UID is never echoed.
        known = self.syntax.is_valid and self.syntax.is_transfer_syntax
        self.syntax_name = self.syntax.name if known else "an unrecognised encoding"
        self._frames: dict[int, np.ndarray] = {}
        self.burned_in = str(_value(ds, TAG_BURNED_IN_ANNOTATION, "")).strip().upper() == "YES"

    @property
    def nbytes(self) -> int:
        """Memory held: the pixel data as stored and the decoded frames."""
        stored = sum(len(self.ds[tag].value or b"") for tag in PIXEL_DATA_TAGS if tag in self.ds)
        return stored + sum(frame.nbytes for frame in self._frames.values())

    def check_decoder(self) -> None:
        """Refuse, before decoding, an encoding no installed decoder reads."""
        try:
            decoder = pixels.get_decoder(self.syntax)
        except NotImplementedError:
            decoder = None
        if decoder is None or not decoder.is_available:
            raise ScanError(
                f"This scan is compressed with {self.syntax_name}, which this app cannot decode. "
                "Export it uncompressed (or as JPEG 2000) and upload it again.",
                "unsupported_compression",
            )

    def _frame(self, index: int) -> np.ndarray:
        """Frame `index` as stored, decoded once; the last frame asked for is kept."""
        if index not in self._frames:
            try:
                with heavy_decode(self.rows * self.columns):
                    arr = pixels.pixel_array(self.ds, index=index)  # decodes this frame only
            except Exception:
                if not self.syntax.is_compressed:  # plain pixels fail only when cut short
                    raise ScanError(DAMAGED_DICOM, "truncated") from None
                raise ScanError(
                    f"The image data ({self.syntax_name}) could not be decoded: the file may be "
                    "damaged or use a variant of this compression that no installed decoder reads.",
                    "undecodable",
                ) from None
            self._frames = {index: self._within_budget(arr)}  # one kept: moving on frees the last
        return self._frames[index]

    @property
    def factor(self) -> int:
        """How much a frame is shrunk after decoding (1: not at all; see scan.budget)."""
        return reduction(self.columns, self.rows)

    def _within_budget(self, arr: np.ndarray) -> np.ndarray:
        factor = self.factor
        if factor <= 1:
            return arr
        if self.photometric == "PALETTE COLOR":  # indices: pick pixels, never average them
            return arr[::factor, ::factor]
        reduced = reduce_array(arr, factor)
        return reduced if self.grayscale else np.rint(reduced).astype(arr.dtype)

    def render(self, frame: int | None, choice: str) -> Scan:
        """The model's picture of `frame` (0-based, None: the middle one) through window `choice`."""
        ds = self.ds
        index = frame_index(frame, self.frame_count)
        check_choice(choice, self.window_choices, f"{self.modality or 'DICOM'} scan")
        self.check_decoder()
        arr = self._frame(index)
        if self.grayscale:
            values = pixels.apply_modality_lut(arr, ds)  # stored values -> e.g. Hounsfield units
            gray, label = _file_window(values, ds) if choice == AUTO else (None, None)
            if gray is None:
                default = "soft tissue" if self.modality == "CT" and choice == AUTO else choice
                gray, label = computed_window(values, default)
            shape = str(_value(ds, TAG_PRESENTATION_LUT_SHAPE, "")).strip().upper()
            if self.photometric == "MONOCHROME1" or shape == "INVERSE":  # one inversion, not two
                gray = 255.0 - gray
            if _value(ds, TAG_PRESENTATION_LUT_SEQUENCE):
                bits = int(ds.PresentationLUTSequence[0].LUTDescriptor[2])
                gray = pixels.apply_presentation_lut(gray, ds) * (255.0 / (2**bits - 1))
            picture = Image.fromarray(to_uint8(gray), "L").convert("RGB")
        else:
            colour = _dicom_colour(arr, ds, self.photometric, self.samples)
            picture, label = Image.fromarray(colour, "RGB"), None
        notes = (BURNED_IN,) if self.burned_in else ()
        if self.factor > 1:
            notes += (budget_note(self.columns, self.rows, self.factor),)
        metadata = _dicom_metadata(
            ds, self.rows, self.columns, self.frame_count, self.syntax_name, label
        )
        choices = self.window_choices if self.grayscale else (AUTO,)
        return Scan(
            picture, "DICOM", self.frame_count, index, label, metadata, notes, self.burned_in,
            self.grayscale, choices,
        )  # fmt: skip


def open_dicom(path: Path, head: bytes, max_pixels: int) -> DicomFile:
    """The DICOM file at `path` (`head`: its first bytes), checked and its pixels read.

    Raises ScanError for what cannot be shown; the caller turns any other exception into one.
    """
    _check_deflated(path, head, max_pixels)
    try:  # force: a file without preamble is still DICOM; large values are read only on use
        ds = dcmread(path, force=True, defer_size="2 MB")
    except Exception:
        raise ScanError(DAMAGED_DICOM, "damaged") from None
    opened = DicomFile(ds, max_pixels)
    for tag in PIXEL_DATA_TAGS:  # read the deferred pixels now: the upload may go away later
        if tag in ds:
            try:
                ds[tag].value  # noqa: B018
            except Exception:
                raise ScanError(DAMAGED_DICOM, "truncated") from None
    return opened


def _check_deflated(path: Path, head: bytes, max_pixels: int) -> None:
    """pydicom inflates a deflated dataset whole: bound the inflated size first (zip bombs)."""
    if _DEFLATED_UID not in head:
        return
    offset = 132 if head[128:132] == b"DICM" else 0
    while head[offset : offset + 2] == b"\x02\x00":  # walk the File Meta group to its end
        if head[offset + 4 : offset + 6] in _LONG_VRS:
            offset += 12 + unpack("<I", head[offset + 8 : offset + 12])[0]
        else:
            offset += 8 + unpack("<H", head[offset + 6 : offset + 8])[0]
    budget, total = max_pixels * DEFLATED_BYTES_PER_PIXEL, 0
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(1 << 20):
            while chunk:
                total += len(inflater.decompress(chunk, 1 << 22))
                if total > budget:
                    raise ScanError("This scan is too large to open safely.", "too_large")
                chunk = inflater.unconsumed_tail


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    syntax = _value(meta, TAG_TRANSFER_SYNTAX)
    if syntax:
        return UID(str(syntax))
    # No transfer syntax: the encoding pydicom read the dataset with holds for native pixels.
    element = ds[next(tag for tag in PIXEL_DATA_TAGS if tag in ds)]
    implicit, little = ds.original_encoding
    if element.is_undefined_length or little is None:  # encapsulated: the codec is unknown
        raise ScanError(
            "This DICOM file does not say how its image is compressed, so it cannot be decoded.",
            "unsupported_compression",
        )
    explicit = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else explicit
    return meta.TransferSyntaxUID


def _file_window(values: np.ndarray, ds: Dataset) -> tuple[np.ndarray | None, str | None]:
    """The file's own VOI LUT, else its first window centre/width; (None, None) if unusable."""
    sequence = _value(ds, TAG_VOI_LUT_SEQUENCE)
    if sequence:
        try:
            first, entries = int(sequence[0].LUTDescriptor[1]), sequence[0].LUTDescriptor[0]
            table = pixels.apply_voi(np.arange(first, first + (entries or 65536)), ds)
            low, high = float(table.min()), float(table.max())
            if high > low:
                out = pixels.apply_voi(np.rint(values).astype(np.int64), ds)
                return (out.astype(np.float64) - low) * (255.0 / (high - low)), "file VOI LUT"
        except Exception:  # a malformed LUT: fall back to the window or the default
            pass
    centre, width = _value(ds, TAG_WINDOW_CENTER), _value(ds, TAG_WINDOW_WIDTH)
    if centre is None or width is None:
        return None, None
    try:
        centre, width = float(_first(centre)), float(_first(width))
        function = str(_value(ds, TAG_VOI_LUT_FUNCTION, "LINEAR")).strip().upper()
        out = apply_window(values, centre, width, function)
    except Exception:  # e.g. a zero width: use the default window instead
        return None, None
    return out, f"file window (C {readable_number(centre)} / W {readable_number(width)})"


def _dicom_colour(arr: np.ndarray, ds: Dataset, photometric: str, samples: int) -> np.ndarray:
    if photometric == "PALETTE COLOR" and samples == 1:
        rgb = pixels.apply_color_lut(arr, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return to_uint8(rgb.astype(np.float64) * (255.0 / (2**bits - 1)))
    if samples != 3 or photometric.startswith("YBR_PARTIAL"):  # pixel_array made YBR_FULL RGB
        raise ScanError(
            f"This scan's colour encoding ({_code(photometric) or 'unknown'}) is not supported.",
            "unsupported_colour",
        )
    bits = int(_value(ds, TAG_BITS_STORED, arr.dtype.itemsize * 8))
    if bits <= 8:
        return arr.astype(np.uint8)
    return to_uint8(arr.astype(np.float64) * (255.0 / (2**bits - 1)))


# ----------------------------------------------------------------------- header elements
def _first(value):
    """The first of a multi-valued element (pydicom's MultiValue is a Sequence), else the value."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return value[0] if len(value) else None
    return value


def _value(ds: Dataset, tag, default=None):
    """The element's value, or `default` when it is absent, empty or does not parse."""
    try:
        value = ds[tag].value if tag in ds else None
    except Exception:  # e.g. text where a number belongs: treat as absent
        return default
    return default if value is None or (isinstance(value, str | bytes) and not value) else value


def _code(value) -> str | None:
    """A DICOM code string, or None when the value is anything else (never free text)."""
    value = _first(value)
    text = str(value).strip() if value is not None else ""
    return text if _CODE.fullmatch(text) else None


def _body_part(value) -> str | None:
    """Body Part Examined when it is one of the defined terms (PS3.16 CID 4031, common subset);
    in practice the element often holds free text, which is never shown."""
    code = _code(value)
    return code if code in BODY_PARTS else None


def _number(value) -> str | None:
    try:
        many = isinstance(value, Sequence) and not isinstance(value, str | bytes)
        values = list(value) if many else [value]
        return " x ".join(f"{float(v):.4g}" for v in values[:2])
    except (TypeError, ValueError):
        return None


def _dicom_metadata(ds: Dataset, rows, columns, frames, syntax_name, window) -> dict[str, str]:
    """The allow-list: only these elements, each formatted from its expected type."""
    spacing, imager = _number(_value(ds, TAG_PIXEL_SPACING)), None
    if not spacing:  # projection X-ray: the spacing at the detector
        imager = _number(_value(ds, TAG_IMAGER_PIXEL_SPACING))
    thickness = _number(_value(ds, TAG_SLICE_THICKNESS))
    found = {
        "Format": "DICOM",
        "Modality": _code(_value(ds, TAG_MODALITY)),
        "Body part": _body_part(_value(ds, TAG_BODY_PART)),
        "Rows": str(rows),
        "Columns": str(columns),
        "Frames": str(frames),
        "Pixel spacing": spacing and f"{spacing} mm",
        "Imager pixel spacing": imager and f"{imager} mm",
        "Slice thickness": thickness and f"{thickness} mm",
        "Photometric interpretation": _code(_value(ds, TAG_PHOTOMETRIC)),
        "Bits stored": _number(_value(ds, TAG_BITS_STORED)),
        "Transfer syntax": syntax_name,
        "Window": window,
    }
    return {label: value for label, value in found.items() if value}
