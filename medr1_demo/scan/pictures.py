"""Plain pictures (PNG, JPEG, TIFF, BMP, WebP) opened once, then shown at any frame and window.

`open_picture` reads the header only and checks the size before any pixel is decoded; a frame is
decoded the first time it is asked for and kept, so a window change or a second Answer costs only
the windowing. 16-bit and float grey pictures keep their full range until a window is applied,
like DICOM; 8-bit and colour pictures become RGB as they are, RGBA onto white as Med-R1's own
loader (qwen_vl_utils) does.

    from medr1_demo.scan.reader import open_scan
    opened = open_scan("upload.png")          # a PictureFile for plain pictures
    scan = opened.picture(frame=None, window="auto")

Tests: `.venv/bin/python -m pytest tests/test_imaging.py -q`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from medr1_demo.scan.budget import heavy_decode, reduction
from medr1_demo.scan.budget import note as budget_note
from medr1_demo.scan.types import OpenedScan, Scan, ScanError, check_choice, check_size, frame_index
from medr1_demo.scan.windowing import AUTO, FULL_RANGE, computed_window, to_uint8

PIL_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "TIFF": "TIFF", "BMP": "BMP", "WebP": "WEBP"}
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class PictureFile(OpenedScan):
    """One opened picture file: its frame count, and each frame decoded once, on first use."""

    def __init__(self, data: bytes, kind: str, max_pixels: int):
        super().__init__()
        self.kind, self.max_pixels = kind, max_pixels
        self._data = data  # the file's bytes: a later frame is decoded without the upload
        with self._open() as image:
            self.frame_count = max(1, int(getattr(image, "n_frames", 1)))
        self._decoded: dict[int, tuple[str, Image.Image]] = {}

    @property
    def nbytes(self) -> int:
        """Memory held: the file and the decoded frames."""
        # 4 bytes per pixel bounds every form a frame is kept in (RGBA, float32; L less).
        frames = sum(4 * np.asarray(p).size if isinstance(p, np.ndarray) else 4 * p.width * p.height
                     for _, p, _, _ in self._decoded.values())  # fmt: skip
        return len(self._data) + frames

    def _open(self) -> Image.Image:
        try:  # the size comes from the header alone; pixels are decoded only after the checks
            return Image.open(io.BytesIO(self._data), formats=[PIL_FORMATS[self.kind]])
        except Image.DecompressionBombError:
            raise ScanError("This image is too large to open safely.", "too_large") from None
        except Exception:
            raise ScanError(
                f"This {self.kind} file is damaged and cannot be opened.", "damaged"
            ) from None

    def _frame(self, index: int):
        """(stored mode, the frame upright: a picture, or float32 values for 16-bit and float
        grey, shrunk within the working budget, its stored size, the note when it was shrunk),
        decoded once."""
        if index not in self._decoded:
            with self._open() as image:
                try:
                    if index:
                        image.seek(index)
                    check_size(*image.size, self.max_pixels)
                    with heavy_decode(image.width * image.height):  # until it has been shrunk
                        image.load()
                        mode, size, factor = image.mode, image.size, reduction(*image.size)
                        upright = _shrunk(image, factor) if factor > 1 else image.copy()
                        if mode in HIGH_DEPTH_MODES:  # grey values as float32, windowed later
                            upright = np.asarray(upright).astype(np.float32)
                except ScanError:
                    raise
                except Exception:
                    raise ScanError(
                        f"This {self.kind} file is damaged or cut short and cannot be read.",
                        "damaged",
                    ) from None
                turn = _orientation(image)
                if turn is not None:  # phone photos: stored sideways, tagged
                    if isinstance(upright, np.ndarray):
                        upright = np.asarray(Image.fromarray(upright, "F").transpose(turn))
                    else:
                        upright = upright.transpose(turn)
                if not isinstance(upright, np.ndarray):
                    upright.info["transparency"] = image.info.get("transparency")
            shrunk = budget_note(*size, factor) if factor > 1 else None
            self._decoded = {index: (mode, upright, size, shrunk)}  # one frame kept at a time
        return self._decoded[index]

    def render(self, frame: int | None, choice: str) -> Scan:
        """The model's picture of `frame` (0-based, None: the middle one) through window `choice`."""
        index = frame_index(frame, self.frame_count)
        mode, picture, size, shrunk = self._frame(index)
        windowable = mode in HIGH_DEPTH_MODES
        applicable = (AUTO, FULL_RANGE)
        check_choice(choice, applicable, f"{self.kind} picture")
        label = None
        if windowable:  # 16-bit / float grey: keep the full range until the window is applied
            gray, label = computed_window(picture, choice)
            rgb = Image.fromarray(to_uint8(gray), "L").convert("RGB")
        elif mode in ("RGBA", "RGBa"):
            # As Med-R1's own loader (qwen_vl_utils) does, so the policy sees what it trained on:
            # RGBA pasted onto white; other transparent modes just lose their alpha below.
            rgb = Image.new("RGB", picture.size, (255, 255, 255))
            rgb.paste(picture.convert("RGB"), mask=picture.getchannel("A"))
        else:
            rgb = picture.convert("RGB")  # L, 1, P, CMYK, YCbCr...
        metadata = {"Format": self.kind, "Width": str(size[0]), "Height": str(size[1])}
        metadata.update({"Frames": str(self.frame_count), "Colour mode": mode})
        if shrunk:
            metadata["Shown at"] = f"{rgb.width} x {rgb.height}"
        if label:
            metadata["Window"] = label
        choices = applicable if windowable else (AUTO,)
        notes = (shrunk,) if shrunk else ()
        return Scan(
            rgb, self.kind, self.frame_count, index, label, metadata, notes, False, windowable,
            choices,
        )  # fmt: skip


# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}  # fmt: skip


def _shrunk(image: Image.Image, factor: int) -> Image.Image:
    """`image` reduced by a whole factor: block means, or picked pixels for palette and 1-bit."""
    size = (image.width // factor, image.height // factor)
    if image.mode in ("P", "1"):  # palette indices must not be averaged
        return image.resize(size, Image.Resampling.NEAREST)
    if image.mode.startswith("I;16"):  # Image.reduce does not take 16-bit modes; BOX is the same
        return image.resize(size, Image.Resampling.BOX)
    return image.reduce(factor)


def _orientation(image: Image.Image):
    try:
        return _TURNS.get(image.getexif().get(0x0112))
    except Exception:  # unreadable EXIF: keep the picture as stored
        return None


def open_picture(path: Path, kind: str, max_pixels: int) -> PictureFile:
    """The picture file at `path`, its format `kind` already read from its first bytes."""
    return PictureFile(Path(path).read_bytes(), kind, max_pixels)
