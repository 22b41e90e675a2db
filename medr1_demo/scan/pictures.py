"""Plain pictures (PNG, JPEG, TIFF, BMP, WebP) opened once, then shown at any frame and window.

`open_picture` reads the header only and checks the size before any pixel is decoded; a frame is
decoded the first time it is asked for and kept, so a window change or a second Answer costs only
the windowing. 16-bit and float grey pictures keep their full range until a window is applied,
like DICOM; 8-bit and colour pictures become RGB as they are, transparent margins on black.

    from medr1_demo.scan.reader import open_scan
    opened = open_scan("upload.png")          # a PictureFile for plain pictures
    scan = opened.picture(frame=None, window="auto")

Tests: `.venv/bin/python -m pytest tests/test_imaging.py -q`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from medr1_demo.scan.types import OpenedScan, Scan, ScanError, check_choice, check_size, frame_index
from medr1_demo.scan.windowing import AUTO, FULL_RANGE, computed_window, to_uint8

PIL_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "TIFF": "TIFF", "BMP": "BMP", "WebP": "WEBP"}
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


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
        # 4 bytes per pixel bounds every mode a frame is kept in (RGBA, I, F; L and I;16 less).
        frames = sum(4 * image.width * image.height for _, image in self._decoded.values())
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

    def _frame(self, index: int) -> tuple[str, Image.Image]:
        """(the stored colour mode, the decoded frame upright), decoded once."""
        if index not in self._decoded:
            with self._open() as image:
                try:
                    if index:
                        image.seek(index)
                    check_size(*image.size, self.max_pixels)
                    image.load()
                except ScanError:
                    raise
                except Exception:
                    raise ScanError(
                        f"This {self.kind} file is damaged or cut short and cannot be read.",
                        "damaged",
                    ) from None
                mode = image.mode
                try:
                    upright = ImageOps.exif_transpose(image)  # phone photos: stored sideways
                except Exception:  # unreadable EXIF: keep the picture as stored
                    upright = image.copy()
            self._decoded = {index: (mode, upright)}  # one frame kept: moving on frees the last
        return self._decoded[index]

    def render(self, frame: int | None, choice: str) -> Scan:
        """The model's picture of `frame` (0-based, None: the middle one) through window `choice`."""
        index = frame_index(frame, self.frame_count)
        mode, image = self._frame(index)
        windowable = mode in HIGH_DEPTH_MODES
        applicable = (AUTO, FULL_RANGE)
        check_choice(choice, applicable, f"{self.kind} picture")
        label = None
        if windowable:  # 16-bit / float grey: keep the full range until the window is applied
            gray, label = computed_window(np.asarray(image).astype(np.float64), choice)
            rgb = Image.fromarray(to_uint8(gray), "L").convert("RGB")
        elif mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
            # Transparent margins go black: scans are shown on black, so padding matches the scan.
            rgba = image.convert("RGBA")
            rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
            rgb = rgb.convert("RGB")
        else:
            rgb = image.convert("RGB")  # L, 1, P, CMYK, YCbCr...
        metadata = {"Format": self.kind, "Width": str(rgb.width), "Height": str(rgb.height)}
        metadata.update({"Frames": str(self.frame_count), "Colour mode": mode})
        if label:
            metadata["Window"] = label
        choices = applicable if windowable else (AUTO,)
        return Scan(
            rgb, self.kind, self.frame_count, index, label, metadata, (), False, windowable, choices
        )


def open_picture(path: Path, kind: str, max_pixels: int) -> PictureFile:
    """The picture file at `path`, its format `kind` already read from its first bytes."""
    return PictureFile(Path(path).read_bytes(), kind, max_pixels)
