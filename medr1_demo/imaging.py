"""Scan ingestion: an uploaded file becomes the 8-bit RGB picture the model sees, plus safe metadata.

Uploads arrive as temporary files whose names mean nothing, so the format is read from the bytes:
DICOM (with or without the 128-byte preamble) or a PNG, JPEG, TIFF, BMP or WebP picture. DICOM
pixels go through pydicom's own display pipeline in the standard order: modality LUT (Hounsfield
units for CT), the file's VOI LUT or window (else a CT preset or a percentile window), MONOCHROME1
inversion, presentation LUT; YBR and palette colour become RGB. Only one frame is ever decoded.

Only allow-listed header fields leave this module: names, IDs, dates, institutions and free text
never do, not even inside error messages or pydicom's log lines. Every refusal is a `ScanError`
whose message a clinician can read.

    from medr1_demo.imaging import load_scan
    scan = load_scan("/tmp/upload", window="lung")   # scan.image is what the model sees

Tests: `.venv/bin/python -m pytest tests/test_imaging.py -q`; timings: `benchmarks/bench_imaging.py`.
"""

from __future__ import annotations

import logging
import operator
import os
import re
import threading
import warnings
import zlib
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from struct import unpack

import numpy as np
from PIL import Image, ImageOps
from pydicom import dcmread, pixels
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

logger = logging.getLogger(__name__)

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
DEFAULT_MAX_PIXELS = 64_000_000  # per frame
PERCENTILES = (1.0, 99.0)
DEFLATED_BYTES_PER_PIXEL = 8  # inflated-size budget of a deflated DICOM, per allowed pixel

# The DICOM elements this module reads. Everything else (names, IDs, dates...) is never touched.
TAG_TRANSFER_SYNTAX = Tag(0x0002, 0x0010)
TAG_SOP_CLASS = Tag(0x0008, 0x0016)
TAG_MODALITY = Tag(0x0008, 0x0060)
TAG_BODY_PART = Tag(0x0018, 0x0015)
TAG_SLICE_THICKNESS = Tag(0x0018, 0x0050)
TAG_IMAGER_PIXEL_SPACING = Tag(0x0018, 0x1164)
TAG_SAMPLES_PER_PIXEL = Tag(0x0028, 0x0002)
TAG_PHOTOMETRIC = Tag(0x0028, 0x0004)
TAG_NUMBER_OF_FRAMES = Tag(0x0028, 0x0008)
TAG_ROWS = Tag(0x0028, 0x0010)
TAG_COLUMNS = Tag(0x0028, 0x0011)
TAG_PIXEL_SPACING = Tag(0x0028, 0x0030)
TAG_BITS_ALLOCATED = Tag(0x0028, 0x0100)
TAG_BITS_STORED = Tag(0x0028, 0x0101)
TAG_BURNED_IN_ANNOTATION = Tag(0x0028, 0x0301)
TAG_WINDOW_CENTER = Tag(0x0028, 0x1050)
TAG_WINDOW_WIDTH = Tag(0x0028, 0x1051)
TAG_VOI_LUT_FUNCTION = Tag(0x0028, 0x1056)
TAG_VOI_LUT_SEQUENCE = Tag(0x0028, 0x3010)
TAG_PRESENTATION_LUT_SEQUENCE = Tag(0x2050, 0x0010)
TAG_PRESENTATION_LUT_SHAPE = Tag(0x2050, 0x0020)
PIXEL_DATA_TAGS = (Tag(0x7FE0, 0x0010), Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009))
REQUIRED_PIXEL_TAGS = (TAG_ROWS, TAG_COLUMNS, TAG_BITS_ALLOCATED, TAG_PHOTOMETRIC)

_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF", b"II+\x00": "TIFF", b"MM\x00+": "TIFF", b"BM": "BMP"}  # fmt: skip
_PIL_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "TIFF": "TIFF", "BMP": "BMP", "WebP": "WEBP"}
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())  # 4-byte lengths
_DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
_CODE = re.compile(r"[A-Z0-9 _]{1,16}")  # a DICOM code string (CS) and nothing else
_NO_IMAGE_KINDS = {"SR": "a structured report", "RTSTRUCT": "a radiotherapy structure set",
                   "RTPLAN": "a radiotherapy plan", "ECG": "a waveform", "KO": "a key-object note",
                   "PR": "a presentation state", "DOC": "a document"}  # fmt: skip

NOT_AN_IMAGE = (
    "This file is not a scan this app can read. Upload a DICOM file or a PNG, JPEG, TIFF, BMP "
    "or WebP image."
)
BURNED_IN = (
    "The file says text is burned into the picture, which may include patient identifiers. "
    "Check the picture before sharing it."
)
DAMAGED_DICOM = (
    "This DICOM file is damaged or incomplete, so its image cannot be read. Try exporting the "
    "scan again."
)


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
                return _load_dicom(path, head, frame, choice, max_pixels)
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


def _frame_index(frame: int | None, count: int) -> int:
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


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ScanError("This image has no pixels (its width or height is zero).", "zero_size")
    if width * height > max_pixels:
        raise ScanError(
            f"This image is too large to open safely ({width} x {height} pixels per frame; the "
            f"limit is {max_pixels / 1e6:g} megapixels).",
            "too_large",
        )


def _check_choice(choice: str, applicable: tuple[str, ...], what: str) -> None:
    if choice not in applicable:
        raise ScanError(
            f"The '{choice}' window is a CT preset in Hounsfield units and does not apply to "
            f"this {what}. Choose {' or '.join(repr(c) for c in applicable)}.",
            "window",
        )


# -------------------------------------------------------------------------------- windowing
def _window(values: np.ndarray, centre: float, width: float, function: str = "LINEAR_EXACT"):
    """Window `values` into 0..255 with pydicom's apply_windowing (a view dataset fixes the range)."""
    view = Dataset()
    view.PhotometricInterpretation = "MONOCHROME2"  # inversion is applied afterwards
    view.BitsStored, view.PixelRepresentation = 8, 0  # output range 0..255
    view.WindowCenter, view.WindowWidth, view.VOILUTFunction = centre, width, function
    return pixels.apply_windowing(values, view)


def _num(x: float) -> str:
    """A readable number for a label: 40, -600, 0.25, 1253010 (never 1.25e+06)."""
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.0f}"


def _computed_window(values: np.ndarray, choice: str) -> tuple[np.ndarray, str]:
    if choice in CT_WINDOWS:
        centre, width = CT_WINDOWS[choice]
        return _window(values, centre, width), f"{choice} (C {_num(centre)} / W {_num(width)})"
    low, high = float(np.min(values)), float(np.max(values))
    label = f"full range ({_num(low)} to {_num(high)})"
    if choice != FULL_RANGE:
        # Percentiles of a subsample: the same window within a grey level, several times faster.
        sample = values[:: max(1, values.shape[0] // 256), :: max(1, values.shape[1] // 256)]
        p_low, p_high = (float(v) for v in np.percentile(sample, PERCENTILES))
        if p_high > p_low:
            low, high = p_low, p_high
        label = f"percentile {PERCENTILES[0]:g}-{PERCENTILES[1]:g} ({_num(low)} to {_num(high)})"
    width = max(high - low, 1e-6)
    return _window(values, low + width / 2, width), label


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
        out = _window(values, centre, width, function)
    except Exception:  # e.g. a zero width: use the default window instead
        return None, None
    return out, f"file window (C {_num(centre)} / W {_num(width)})"


# ------------------------------------------------------------------------------------ DICOM
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


def _load_dicom(path: Path, head: bytes, frame, choice: str, max_pixels: int) -> Scan:
    _check_deflated(path, head, max_pixels)
    try:  # force: a file without preamble is still DICOM; large values are read only on use
        ds = dcmread(path, force=True, defer_size="2 MB")
    except Exception:
        raise ScanError(DAMAGED_DICOM, "damaged") from None
    modality = _code(_value(ds, TAG_MODALITY)) or ""
    if not any(tag in ds for tag in PIXEL_DATA_TAGS):
        sop = _value(ds, TAG_SOP_CLASS)
        image_sop = sop is not None and "Image" in UID(str(sop)).name
        if not len(ds) or image_sop or _value(ds, TAG_ROWS) is not None:
            raise ScanError(DAMAGED_DICOM, "truncated")  # an image object whose pixels are gone
        what = _NO_IMAGE_KINDS.get(modality, "a non-image object")
        raise ScanError(
            f"This DICOM file holds no image: it is {what}. Upload an image series file instead.",
            "no_image",
        )
    if any(tag not in ds for tag in REQUIRED_PIXEL_TAGS):
        raise ScanError(DAMAGED_DICOM, "damaged")
    try:
        rows, columns = int(_value(ds, TAG_ROWS, 0)), int(_value(ds, TAG_COLUMNS, 0))
        samples = int(_value(ds, TAG_SAMPLES_PER_PIXEL, 1))
        frames = max(1, int(_value(ds, TAG_NUMBER_OF_FRAMES, 1)))
    except (TypeError, ValueError):
        raise ScanError(DAMAGED_DICOM, "damaged") from None
    _check_size(columns, rows, max_pixels)
    index = _frame_index(frame, frames)
    photometric = str(_value(ds, TAG_PHOTOMETRIC, "")).strip().upper()
    grayscale = photometric in ("MONOCHROME1", "MONOCHROME2") and samples == 1
    applicable = WINDOW_CHOICES if modality == "CT" and grayscale else (AUTO, FULL_RANGE)
    _check_choice(choice, applicable, f"{modality or 'DICOM'} scan")

    syntax = _transfer_syntax(ds)
    try:
        decoder = pixels.get_decoder(syntax)
    except NotImplementedError:
        decoder = None
    syntax_name = syntax.name if syntax.is_valid else "an unrecognised encoding"
    if decoder is None or not decoder.is_available:
        raise ScanError(
            f"This scan is compressed with {syntax_name}, which this app cannot decode. Export "
            "it uncompressed (or as JPEG 2000) and upload it again.",
            "unsupported_compression",
        )
    try:
        arr = pixels.pixel_array(ds, index=index)  # decodes this one frame only
    except Exception:
        if not syntax.is_compressed:  # plain pixels fail only when they are cut short
            raise ScanError(DAMAGED_DICOM, "truncated") from None
        raise ScanError(
            f"The image data ({syntax_name}) could not be decoded: the file may be damaged or use "
            "a variant of this compression that no installed decoder reads.",
            "undecodable",
        ) from None

    if grayscale:
        values = pixels.apply_modality_lut(arr, ds)  # stored values -> e.g. Hounsfield units
        gray, label = _file_window(values, ds) if choice == AUTO else (None, None)
        if gray is None:
            default = "soft tissue" if modality == "CT" and choice == AUTO else choice
            gray, label = _computed_window(values, default)
        shape = str(_value(ds, TAG_PRESENTATION_LUT_SHAPE, "")).strip().upper()
        if photometric == "MONOCHROME1" or shape == "INVERSE":  # one inversion, not two
            gray = 255.0 - gray
        if _value(ds, TAG_PRESENTATION_LUT_SEQUENCE):
            bits = int(ds.PresentationLUTSequence[0].LUTDescriptor[2])
            gray = pixels.apply_presentation_lut(gray, ds) * (255.0 / (2**bits - 1))
        picture = Image.fromarray(_to_uint8(gray), "L").convert("RGB")
    else:
        picture, label = Image.fromarray(_dicom_colour(arr, ds, photometric, samples), "RGB"), None

    burned = str(_value(ds, TAG_BURNED_IN_ANNOTATION, "")).strip().upper() == "YES"
    notes = (BURNED_IN,) if burned else ()
    metadata = _dicom_metadata(ds, rows, columns, frames, syntax_name, label)
    return Scan(
        picture, "DICOM", frames, index, label, metadata, notes, burned,
        grayscale, applicable if grayscale else (AUTO,),
    )  # fmt: skip


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


def _dicom_colour(arr: np.ndarray, ds: Dataset, photometric: str, samples: int) -> np.ndarray:
    if photometric == "PALETTE COLOR" and samples == 1:
        rgb = pixels.apply_color_lut(arr, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return _to_uint8(rgb.astype(np.float64) * (255.0 / (2**bits - 1)))
    if samples != 3 or photometric.startswith("YBR_PARTIAL"):  # pixel_array made YBR_FULL RGB
        raise ScanError(
            f"This scan's colour encoding ({_code(photometric) or 'unknown'}) is not supported.",
            "unsupported_colour",
        )
    bits = int(_value(ds, TAG_BITS_STORED, arr.dtype.itemsize * 8))
    if bits <= 8:
        return arr.astype(np.uint8)
    return _to_uint8(arr.astype(np.float64) * (255.0 / (2**bits - 1)))


def _code(value) -> str | None:
    """A DICOM code string, or None when the value is anything else (never free text)."""
    value = _first(value)
    text = str(value).strip() if value is not None else ""
    return text if _CODE.fullmatch(text) else None


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
        "Body part": _code(_value(ds, TAG_BODY_PART)),
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


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


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
        index = _frame_index(frame, frames)
        try:
            if index:
                image.seek(index)
            _check_size(*image.size, max_pixels)
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
    _check_choice(choice, applicable, f"{kind} picture")
    label = None
    if windowable:  # 16-bit / float grey: keep the full range until the window is applied
        gray, label = _computed_window(np.asarray(image).astype(np.float64), choice)
        rgb = Image.fromarray(_to_uint8(gray), "L").convert("RGB")
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
