"""Relevance maps drawn over the picture the policy saw: for the page, the API and `trainer eval --maps`.

Pure PIL and numpy (no torch, no Gradio). A map's grid (one share per merged visual token, rows x
columns) is stretched over the picture by bilinear interpolation between cell centres, coloured
from dark red to yellow by its share of the map's maximum and blended in where it is high, so
low relevance leaves the scan visible. The peak cell gets a white frame; `boxes` (fractions of
width and height, e.g. a phantom's finding) get cyan frames.

    shown = overlay.heat_overlay(picture, answer.relevance.grid)
    url = overlay.data_url(shown)   # "data:image/png;base64,..." for an <img> tag
"""

import base64
import io

import numpy as np
from PIL import Image, ImageDraw

PEAK_COLOUR, BOX_COLOUR = (255, 255, 255), (0, 229, 255)


def upsampled(grid, size: tuple[int, int]) -> np.ndarray:
    """The grid stretched to `size` (width, height), scaled so its maximum is 1."""
    values = np.asarray(grid, dtype=np.float32)
    top = float(values.max()) if values.size else 0.0
    values = values / top if top > 0 else values
    cells = Image.fromarray(values, mode="F")
    return np.asarray(cells.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def heat_overlay(picture: Image.Image, grid, boxes=(), alpha: float = 0.6) -> Image.Image:
    """`picture` (RGB) with the map's heat blended over it, its peak cell and `boxes` framed."""
    base = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    width, height = picture.size
    heat = np.clip(upsampled(grid, (width, height)), 0.0, 1.0)[..., None]
    colour = np.concatenate(
        [np.clip(0.45 + 1.1 * heat, 0, 1), np.clip(1.6 * heat - 0.55, 0, 1), 0.08 * heat], axis=-1
    )
    weight = alpha * heat
    mixed = base * (1 - weight) + colour * weight
    shown = Image.fromarray((np.clip(mixed, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(shown)
    rows, columns = np.asarray(grid).shape
    values = np.asarray(grid, dtype=np.float64)
    row, column = np.unravel_index(int(values.argmax()), values.shape)
    line = max(1, round(min(width, height) / 150))
    draw.rectangle(
        [column * width / columns, row * height / rows,
         (column + 1) * width / columns - 1, (row + 1) * height / rows - 1],
        outline=PEAK_COLOUR, width=line,
    )  # fmt: skip
    for x0, y0, x1, y1 in boxes:
        draw.rectangle(
            [x0 * width, y0 * height, x1 * width - 1, y1 * height - 1],
            outline=BOX_COLOUR, width=line,
        )  # fmt: skip
    return shown


def data_url(image: Image.Image) -> str:
    """A PNG data URL: inlined in the page, so no derived file is ever written or served."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
