"""What a loaded scan is, and the refusals every scan reader shares.

`Scan` (the model's picture plus what may be shown about it) and `ScanError` (a refusal a
clinician can read) are defined here so that every reader (`medr1_demo.scan.pictures`,
`medr1_demo.scan.dicom`) builds and raises the same types. The checks (frame number, picture size,
window choice) raise `ScanError` with the sentence to show.

    from medr1_demo.scan.types import Scan, ScanError

Tests: `.venv/bin/python -m pytest tests/test_imaging.py -q`.
"""

from __future__ import annotations

import logging
import operator
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from medr1_demo.scan.windowing import AUTO, WINDOW_CHOICES

logger = logging.getLogger("medr1_demo.scan")
PICTURES_KEPT = 4  # rendered pictures kept per upload (frame x window x plane)
# Planes of a volume, in patient terms; a single picture or a slice-by-slice series has none.
AXIAL, CORONAL, SAGITTAL = "axial", "coronal", "sagittal"
PLANES: tuple[str, ...] = (AXIAL, CORONAL, SAGITTAL)


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
    plane: str | None = None  # the plane shown (a volume); frame_count counts its slices
    planes: tuple[str, ...] = ()  # the PLANES this scan offers; () means no plane choice


class OpenedScan:
    """An upload read once (header checked, pixels in memory); `picture` renders any frame.

    Readers subclass it and implement `render` (volumes: `render_plane`); `picture` checks the
    arguments first and lets only ScanError out, so a caller never sees a library's message (which
    may quote the header).
    """

    kind: str
    frame_count: int
    planes: tuple[str, ...] = ()  # a volume's PLANES; () for a single picture

    def __init__(self):
        self._lock = threading.Lock()  # one render at a time per upload
        self._shown: dict[tuple, Scan] = {}

    @property
    def nbytes(self) -> int:
        """Memory this upload holds (file data and decoded frames)."""
        raise NotImplementedError

    def render(self, index: int | None, choice: str) -> Scan:
        raise NotImplementedError

    def render_plane(self, index: int | None, choice: str, plane: str | None) -> Scan:
        """`render` in `plane` (checked to be one of `planes`, or None: the scan's own view)."""
        return self.render(index, choice)

    def picture(
        self, frame: int | None = None, window: str = AUTO, plane: str | None = None
    ) -> Scan:
        """The model's picture of `frame` (0-based; None: the middle one) through `window`.

        `plane` (a volume: axial, coronal or sagittal; None: the plane it was acquired in) must be
        one of `planes`; "axial" is also accepted for a scan without planes, as its only view.
        The last few pictures are kept: showing a scan and then answering about it renders once.
        """
        choice, index = check_window(window), check_frame(frame)
        view = check_plane(plane, self.planes)
        with self._lock:
            shown = self._shown.get((index, choice, view))
            if shown is None:
                with refusals():
                    shown = self.render_plane(index, choice, view)
                self._shown[(index, choice, view)] = shown
                while len(self._shown) > PICTURES_KEPT:
                    self._shown.pop(next(iter(self._shown)))
            return shown


# ----------------------------------------------------------------------------------- checks
def check_window(window) -> str:
    """The window name as WINDOW_CHOICES spells it, or ScanError."""
    choice = str(window or AUTO).strip().lower()
    if choice not in WINDOW_CHOICES:
        raise ScanError(
            f"Unknown window '{str(window)[:40]}'. Choose one of: {', '.join(WINDOW_CHOICES)}.",
            "window",
        )
    return choice


def check_frame(frame) -> int | None:
    """A 0-based frame number (an int or a numpy integer; never a float or a bool) or None."""
    if frame is None:
        return None
    if isinstance(frame, bool) or not hasattr(frame, "__index__"):
        raise ScanError("The frame must be a whole number (0 is the first frame).", "frame")
    return operator.index(frame)


def check_plane(plane, planes: tuple[str, ...]) -> str | None:
    """The plane as PLANES spells it (None: the scan's own view), or ScanError."""
    if plane is None or not str(plane).strip():
        return None
    view = str(plane).strip().lower()
    if view in planes:
        return view
    if not planes and view == AXIAL:
        return None  # a single picture's only view, so a client may always send "axial"
    if view not in PLANES:
        raise ScanError(
            f"Unknown plane '{str(plane)[:40]}'. Choose one of: {', '.join(PLANES)}.", "plane"
        )
    if not planes:
        raise ScanError(
            f"This scan is shown slice by slice as stored, so it has no {view} view.", "plane"
        )
    raise ScanError(
        f"This scan offers the {' and '.join(planes)} plane{'s' * (len(planes) > 1)} only.",
        "plane",
    )


def frame_index(frame: int | None, count: int, unit: str = "frame") -> int:
    """The 0-based frame (or slice: `unit`) to decode: `frame`, or the middle one when None."""
    if frame is None:
        return count // 2
    if not 0 <= frame < count:
        plural = unit if count == 1 else f"{unit}s"
        raise ScanError(
            f"This scan has {count} {plural}, so {unit} {frame} does not exist "
            f"({unit}s are numbered 0 to {count - 1}).",
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


# ----------------------------------------------------------------------------- quiet libraries
# pydicom's warnings and log lines quote element values (a malformed birth date, an overlong
# name), TIFF debug logs quote tag text and nibabel reports header fixes; while a scan loads in
# this thread they are dropped.
_LOADING = threading.local()


class _LoadingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_LOADING, "active", False)


for _name in ("pydicom", "PIL.TiffImagePlugin", "nibabel.global"):
    logging.getLogger(_name).addFilter(_LoadingFilter())


@contextmanager
def quiet():
    _LOADING.active = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _LOADING.active = False


@contextmanager
def refusals():
    """Library noise silenced, and anything but a ScanError turned into one that quotes nothing."""
    try:
        with quiet():
            yield
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
