"""Drawing surface and scene description shared by the phantom drawers of `trainer.phantoms.render`.

`Scene` says what one picture must show, `Phantom` holds the drawn pixels, and `Canvas` draws
soft-edged shapes, lines, blur and smooth noise in normalised coordinates (x and y from -1 to 1,
left to right and top to bottom). `paint`, `lesion_radius`, `side_signs` and `place` are the
helpers every modality's drawer uses to blend tissue in and to size and position findings.

Used through `trainer.phantoms.render.render`; on its own:
`python -c "import numpy as np; from trainer.phantoms.canvas import Canvas;
print(Canvas(32, np.random.default_rng(0)).ellipse(0, 0, 0.5).sum())"`
"""

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

# Lesion radius per grade (small, medium, large) in normalised units; the gaps are wide on purpose.
RADII = (0.07, 0.15, 0.26)


@dataclass(frozen=True)
class Scene:
    """What one picture must show; the question generator sets the field a question asks about."""

    modality: str
    anatomy: str
    finding: str = ""  # "" = nothing abnormal
    grade: int = 1  # 0, 1, 2: size, severity or count class of the finding
    side: str = "left"  # patient's side of a lateral finding: left, right, both
    attribute: str = ""  # modality-specific: contrast, sequence, Doppler, skin type, eye, stain


@dataclass
class Phantom:
    """The drawn picture of one scene."""

    pixels: np.ndarray  # HU for CT; otherwise float [0, 1], (H, W) grey or (H, W, 3) colour
    window: tuple[float, float] | None = None  # CT display window (centre, width)
    # Where the scene's finding was drawn: one soft (H, W) mask in [0, 1] per drawn part (a
    # lesion, each lung of a bilateral effusion, each spot); empty when there is no finding.
    # `trainer.phantoms.regions` turns them into boxes and a mask beside the picture.
    findings: list[np.ndarray] = field(default_factory=list)


class Canvas:
    """A square drawing surface in normalised coordinates with soft-edged shape masks."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng = size, rng
        self.x, self.y = _grid(size)
        self.px = 2.0 / size  # one pixel in normalised units

    def ellipse(self, cx, cy, rx, ry=None, angle=0.0, power=2.0, wobble=None, out=None):
        """Soft mask (0..1) of a rotated ellipse; power 4 gives a rounded box; wobble bends its rim.

        With `out`, the shape is merged into that mask in place (fast for many small shapes).
        """
        ry = rx if ry is None else ry
        # Work only inside the shape's bounding square: most shapes are small, the grid is not.
        reach = max(rx, ry) * (1.42 if power > 2 else 1.0) + 2 * self.px
        if wobble is not None:
            reach *= 1 + sum(abs(a) for _, a, _ in wobble)
        j0, j1 = (
            int(np.clip((v + 1) / self.px, 0, self.size))
            for v in (cx - reach, cx + reach + self.px)
        )
        i0, i1 = (
            int(np.clip((v + 1) / self.px, 0, self.size))
            for v in (cy - reach, cy + reach + self.px)
        )
        mask = np.zeros((self.size, self.size)) if out is None else out
        if i1 <= i0 or j1 <= j0:
            return mask
        dx, dy = self.x[i0:i1, j0:j1] - cx, self.y[i0:i1, j0:j1] - cy
        if angle:
            ca, sa = np.cos(angle), np.sin(angle)
            dx, dy = ca * dx + sa * dy, -sa * dx + ca * dy
        if power == 2:
            d = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
        else:
            d = (np.abs(dx / rx) ** power + np.abs(dy / ry) ** power) ** (1.0 / power)
        if wobble is not None:  # irregular outline: radius modulated by a few angular harmonics
            theta = np.arctan2(dy, dx)
            d = d / (1 + sum(a * np.cos(k * theta + p) for k, a, p in wobble))
        patch = np.clip((1 - d) * min(rx, ry) / self.px + 0.5, 0.0, 1.0)
        region = mask[i0:i1, j0:j1]
        np.maximum(region, patch, out=region)
        return mask

    def blank(self) -> np.ndarray:
        return np.zeros((self.size, self.size))

    def capsule(self, x0, y0, x1, y1, half_width):
        """Soft mask of an ellipse stretched from (x0, y0) to (x1, y1): a finger bone, a fibre."""
        half_length = max(np.hypot(x1 - x0, y1 - y0) / 2, half_width)
        angle = np.arctan2(-(x1 - x0), y1 - y0)
        return self.ellipse((x0 + x1) / 2, (y0 + y1) / 2, half_width, half_length, angle=angle)

    def wobble(self, amount: float):
        return [
            (k, amount * self.rng.uniform(0.3, 1) / k**0.5, self.rng.uniform(0, 6.3))
            for k in (2, 3, 5)
        ]

    def blur(self, img: np.ndarray, sigma_y: float, sigma_x: float | None = None) -> np.ndarray:
        """Gaussian blur (sigmas in pixels) along rows then columns; colour images as a whole."""
        return _blur_axis(_blur_axis(img, sigma_y, 0), sigma_x or sigma_y, 1)

    def noise(self, sigma: float, sigma_x: float | None = None) -> np.ndarray:
        """Smooth Gaussian noise of unit standard deviation, correlated over `sigma` pixels."""
        field = self.blur(self.rng.standard_normal((self.size, self.size)), sigma, sigma_x)
        return field / (field.std() + 1e-9)

    def lines(self, polylines, widths) -> np.ndarray:
        """Mask of polylines given in normalised coordinates, widths in normalised units."""
        im = Image.new("L", (self.size, self.size))
        draw = ImageDraw.Draw(im)
        for points, width in zip(polylines, widths, strict=True):
            pix = [((px + 1) / self.px, (py + 1) / self.px) for px, py in points]
            draw.line(pix, fill=255, width=max(1, round(width / self.px)), joint="curve")
        return np.asarray(im, dtype=np.float64) / 255.0


@lru_cache(maxsize=8)
def _grid(size: int):
    centres = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(centres, centres)
    return x, y


@lru_cache(maxsize=32)
def _blur_matrix(size: int, sigma: float) -> np.ndarray:
    idx = np.arange(size)
    weights = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


def _blur_axis(img: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """1-D Gaussian along `axis`: a few shifted sums for narrow kernels, a matrix product for wide."""
    x = np.moveaxis(img, axis, 0)
    n, radius = x.shape[0], int(np.ceil(3 * sigma))
    if radius <= 4:
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        padded = np.pad(x, [(radius, radius)] + [(0, 0)] * (x.ndim - 1), mode="edge")
        out = sum(w / taps.sum() * padded[k : k + n] for k, w in enumerate(taps))
    else:
        out = np.tensordot(_blur_matrix(n, sigma), x, axes=(1, 0))
    return np.moveaxis(out, 0, axis)


def paint(img: np.ndarray, mask: np.ndarray, value) -> np.ndarray:
    """Blend `value` (a number, an RGB triple or an array) into `img` where `mask` is 1."""
    if img.ndim == 3:
        mask = mask[..., None]
        value = np.asarray(value, dtype=np.float64)
    return img * (1 - mask) + value * mask


def lesion_radius(scene: Scene, rng: np.random.Generator) -> float:
    return RADII[scene.grade] * rng.uniform(0.92, 1.08)


def side_signs(side: str) -> list[int]:
    """Image x-direction of the patient's side (radiological convention: patient left = image right)."""
    return {"left": [1], "right": [-1], "both": [-1, 1]}[side]


def place(rng, cx, cy, rx, ry, r, sign=None, lateral=(0.35, 0.9)):
    """A lesion centre of radius r inside the ellipse (cx, cy, rx, ry), on the x-side `sign` if given."""
    sign = sign if sign is not None else rng.choice([-1, 1])
    span_x, span_y = max(rx - r - 0.03, 0.02), max(ry - r - 0.03, 0.0)
    return cx + sign * rng.uniform(*lateral) * span_x, cy + rng.uniform(-0.5, 0.5) * span_y
