"""Procedural phantom scans for the 8 Med-R1 modalities: the drawing code behind `trainer.synth`.

`render(scene, rng, size)` turns a `Scene` (what the picture must show: modality, anatomy, finding,
grade, side, attribute) into pixels. CT comes back in Hounsfield units with its display window;
every other modality as floats in [0, 1], grey (H, W) or colour (H, W, 3). Everything not fixed by
the scene (position, size jitter, contrast, noise, texture) is drawn from `rng`, so one rng seed
gives one picture.

Cues are deliberately large and high-contrast (lesions, silhouettes, colours, counts), because a
very small vision-language model is trained on these pictures at about 56-112 pixels: each answer
must survive that downsampling. Coordinates are normalised: x and y run from -1 to 1, left to right
and top to bottom. Sides are the patient's: on CT and X-ray the patient's left is the image right.

Try it: `python -c "import numpy as np; from trainer.phantoms import Scene, render;
print(render(Scene('CT', 'chest'), np.random.default_rng(0), 64).pixels.shape)"`
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

# Lesion radius per grade (small, medium, large) in normalised units; the gaps are wide on purpose.
RADII = (0.07, 0.15, 0.26)
# CT display windows (centre, width) in HU per anatomy.
CT_WINDOWS = {"head": (40.0, 100.0), "chest": (-300.0, 1400.0), "abdomen": (50.0, 250.0)}
CT_PADDING_HU = -1024.0  # outside the reconstruction circle; stored as 0 after the +1024 shift


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
    pixels: np.ndarray  # HU for CT; otherwise float [0, 1], (H, W) grey or (H, W, 3) colour
    window: tuple[float, float] | None = None  # CT display window (centre, width)


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


# --- radiology -----------------------------------------------------------------------------------


def _ct(c: Canvas, s: Scene, z: float = 0.0) -> Phantom:
    rng = c.rng
    hu = np.full((c.size, c.size), -1000.0)
    ox, oy = rng.uniform(-0.05, 0.05, 2)
    k = rng.uniform(0.93, 1.03) * (1 - 0.015 * abs(z))  # slices away from the centre are smaller
    contrast = s.attribute == "contrast"
    if s.anatomy == "head":
        rx, ry, cx, cy = 0.58 * k, 0.72 * k, ox, oy - 0.05
        hu = paint(hu, c.ellipse(cx, cy, rx + 0.05, ry + 0.05), 30)
        hu = paint(hu, c.ellipse(cx, cy, rx, ry), 900 + 80 * c.noise(2))
        hu = paint(hu, c.ellipse(cx, cy, rx - 0.08, ry - 0.08), 36)
        hu = paint(hu, c.ellipse(cx, cy, (rx - 0.08) * 0.7, (ry - 0.08) * 0.75), 29)
        for sx in (-1, 1):
            hu = paint(hu, c.ellipse(cx + sx * 0.07, cy - 0.02, 0.045, 0.17, angle=sx * 0.25), 6)
        regions = {sx: (cx, cy, rx - 0.08, ry - 0.08) for sx in (-1, 1)}
        bottom = cy + ry + 0.1
    else:
        rx, ry, cx, cy = 0.88 * k, 0.6 * k, ox, oy + 0.04
        hu = paint(hu, c.ellipse(cx, cy, rx, ry), -100)  # subcutaneous fat
        hu = paint(hu, c.ellipse(cx, cy, rx - 0.06, ry - 0.06), 45)
        angle = np.arctan2(c.y - cy, c.x - cx)
        ring = c.ellipse(cx, cy, rx - 0.08, ry - 0.08) - c.ellipse(cx, cy, rx - 0.13, ry - 0.13)
        ribs = np.clip(ring, 0, 1) * (np.cos(angle * 14) > -0.3)
        if s.anatomy == "abdomen":
            ribs = ribs * (np.abs(c.x - cx) > 0.45)
        hu = paint(hu, ribs, 750)
        hu = paint(hu, c.ellipse(cx, cy + 0.42 * k, 0.1, 0.09), 700)  # vertebral body
        hu = paint(hu, c.ellipse(cx, cy + 0.52 * k, 0.035), 30)  # spinal canal
        if s.anatomy == "chest":
            regions = {}
            for sx in (-1, 1):
                lung = (cx + sx * 0.41 * k, cy - 0.04, 0.29 * k, 0.4 * k)
                hu = paint(hu, c.ellipse(*lung), -850 + 25 * c.noise(1.5))
                regions[sx] = lung
            hu = paint(hu, c.ellipse(cx + 0.07, cy + 0.06, 0.2, 0.19), 220 if contrast else 40)
            hu = paint(hu, c.ellipse(cx + 0.1, cy + 0.3, 0.06), 250 if contrast else 40)  # aorta
            hu = paint(hu, c.ellipse(cx, cy - 0.5 * k, 0.08, 0.03), 600)  # sternum
        else:
            liver = (cx - 0.32, cy - 0.08, 0.42 * k, 0.36 * k)
            hu = paint(hu, c.ellipse(*liver), (110 if contrast else 60) + 4 * c.noise(2))
            hu = paint(hu, c.ellipse(cx + 0.52, cy - 0.12, 0.15, 0.21), 105 if contrast else 45)
            for sx in (-1, 1):
                kidney = c.ellipse(cx + sx * 0.34, cy + 0.27, 0.13, 0.17, angle=-sx * 0.3)
                hu = paint(hu, kidney, 200 if contrast else 30)
            hu = paint(hu, c.ellipse(cx + 0.06, cy + 0.22, 0.06), 230 if contrast else 40)
            for _ in range(rng.integers(2, 5)):  # bowel gas
                gas = c.ellipse(
                    cx + rng.uniform(0.05, 0.35),
                    cy + rng.uniform(-0.35, 0.05),
                    rng.uniform(0.03, 0.06),
                )
                hu = paint(hu, gas, -900)
            # Liver lesions sit in the liver (the patient's right) whatever the side.
            regions = {sx: liver for sx in (-1, 1)}
        bottom = cy + ry + 0.06
    table_top = bottom + 0.1 * c.x**2
    hu = paint(hu, ((c.y > table_top) & (c.y < table_top + 0.035) & (np.abs(c.x) < 0.8)) * 1.0, 250)

    f = s.finding
    if f:
        r = lesion_radius(s, rng)
        r = float(np.sqrt(max(r**2 - (0.035 * z) ** 2, 0.0)))  # a sphere cut at slice offset z
        for sx in side_signs(s.side):
            rcx, rcy, rrx, rry = regions[sx]
            if f == "effusion":  # dependent fluid fills the posterior (lower) part of the lung
                lung = c.ellipse(rcx, rcy, rrx, rry)
                level = rcy + rry * (0.55 - 0.5 * s.grade / 2) + 0.06 * (c.x - rcx) ** 2 / rrx
                hu = paint(hu, lung * (c.y > level), 15)
                continue
            if r <= 0:
                continue
            if s.anatomy == "head":
                lx, ly = place(rng, rcx, rcy, rrx, rry, r, sx, lateral=(0.5, 0.9))
            else:  # lungs and liver: keep the lesion inside the organ, clear of its edges
                lx, ly = place(rng, rcx, rcy, rrx, rry, r, lateral=(0.0, 0.5))
            value = {"hemorrhage": 80, "infarct": 8, "lung_mass": 40, "liver_cyst": 5}.get(f)
            value = (230 if contrast else 170) if f == "liver_mass" else value
            hu = paint(hu, c.ellipse(lx, ly, r, wobble=c.wobble(0.08)), value)
    hu = hu + rng.uniform(4, 8) * c.noise(0.7)
    hu[c.x**2 + c.y**2 > 1.0] = CT_PADDING_HU  # circular reconstruction field of view
    return Phantom(hu, CT_WINDOWS[s.anatomy])


# Relative MR signal per tissue: T1 (fat bright, fluid dark) and T2 (fluid bright).
MR_TISSUE = {
    "t1": {
        "fat": 0.9,
        "wm": 0.66,
        "gm": 0.5,
        "csf": 0.08,
        "muscle": 0.35,
        "bone": 0.04,
        "marrow": 0.78,
        "cartilage": 0.45,
        "disc": 0.4,
    },
    "t2": {
        "fat": 0.6,
        "wm": 0.34,
        "gm": 0.5,
        "csf": 0.95,
        "muscle": 0.25,
        "bone": 0.04,
        "marrow": 0.5,
        "cartilage": 0.55,
        "disc": 0.85,
    },
}


def _mri(c: Canvas, s: Scene) -> Phantom:
    rng, t = c.rng, MR_TISSUE[s.attribute or "t1"]
    img = np.zeros((c.size, c.size))
    ox, oy = rng.uniform(-0.05, 0.05, 2)
    k = rng.uniform(0.92, 1.03)
    if s.anatomy == "brain":
        rx, ry, cx, cy = 0.64 * k, 0.8 * k, ox, oy
        for grow, tissue in ((0.0, "fat"), (-0.05, "bone"), (-0.1, "csf"), (-0.13, "gm")):
            img = paint(img, c.ellipse(cx, cy, rx + grow, ry + grow), t[tissue])
        img = paint(img, c.ellipse(cx, cy, (rx - 0.13) * 0.72, (ry - 0.13) * 0.75), t["wm"])
        for sx in (-1, 1):
            img = paint(
                img, c.ellipse(cx + sx * 0.08, cy - 0.02, 0.055, 0.2, angle=sx * 0.3), t["csf"]
            )
        if s.finding:
            r = lesion_radius(s, rng)
            lx, ly = place(
                rng, cx, cy, rx - 0.13, ry - 0.13, r, side_signs(s.side)[0], lateral=(0.6, 0.9)
            )
            if s.finding == "tumor":  # enhancing rim around a less bright core
                img = paint(img, c.ellipse(lx, ly, r, wobble=c.wobble(0.1)), 0.97)
                img = paint(img, c.ellipse(lx, ly, r * 0.5), 0.8) if r > 0.1 else img
            else:
                img = paint(img, c.ellipse(lx, ly, r), 0.05)
    elif s.anatomy == "knee":  # sagittal: femur above, tibia below, patella in front (image right)
        cx, cy = ox, oy
        img = paint(img, c.ellipse(cx, cy, 0.72 * k, 1.4, power=3), t["fat"])
        img = paint(img, c.ellipse(cx, cy, 0.64 * k, 1.4, power=3), t["muscle"])
        img = paint(img, c.ellipse(cx + 0.3, cy - 0.52, 0.06, 0.2), t["csf"])  # suprapatellar fluid
        for bx, by, brx, bry in (
            (cx, cy - 0.9, 0.22, 0.8),
            (cx - 0.02, cy - 0.22, 0.34, 0.21),
            (cx, cy + 0.95, 0.26, 0.78),
            (cx, cy + 0.27, 0.34, 0.12),
        ):
            img = paint(img, c.ellipse(bx, by, brx + 0.03, bry + 0.03), t["cartilage"])
        for bx, by, brx, bry in (
            (cx, cy - 0.9, 0.22, 0.8),
            (cx - 0.02, cy - 0.22, 0.34, 0.21),
            (cx, cy + 0.95, 0.26, 0.78),
            (cx, cy + 0.27, 0.34, 0.12),
            (cx + 0.45, cy - 0.22, 0.07, 0.17),
        ):
            img = paint(img, c.ellipse(bx, by, brx, bry), t["bone"])
            img = paint(img, c.ellipse(bx, by, brx - 0.03, bry - 0.03), t["marrow"])
    else:  # sagittal lumbar spine: stacked vertebral bodies, discs, canal behind (image right)
        cx, cy = ox, oy
        img = paint(img, c.ellipse(cx, cy, 0.78 * k, 1.4, power=3), t["fat"])
        img = paint(img, c.ellipse(cx, cy, 0.7 * k, 1.4, power=3), t["muscle"])
        img = paint(img, c.ellipse(cx + 0.13, cy, 0.075, 1.4, power=4), t["csf"])
        img = paint(img, c.ellipse(cx + 0.13, cy, 0.032, 1.4, power=4), t["wm"])
        for j in range(-3, 4):
            vy = cy + j * 0.3
            img = paint(img, c.ellipse(cx - 0.2, vy, 0.2, 0.12, power=4), t["marrow"])
            img = paint(img, c.ellipse(cx - 0.2, vy + 0.15, 0.19, 0.025, power=4), t["disc"])
            img = paint(img, c.ellipse(cx + 0.4, vy + 0.03, 0.13, 0.06, power=4), t["marrow"])
    bias = 1 + rng.uniform(-0.12, 0.12) * c.x + rng.uniform(-0.12, 0.12) * c.y
    img = img * bias * rng.uniform(0.85, 1.0) + 0.01 * c.noise(3)
    n1, n2 = rng.normal(0, 0.025, (2, c.size, c.size))
    img = np.sqrt((img + n1) ** 2 + n2**2)  # Rician background noise, visible in the air
    return Phantom(np.clip(img, 0, 1))


def _xray(c: Canvas, s: Scene) -> Phantom:
    rng = c.rng
    img = np.full((c.size, c.size), 0.04)
    ox, oy = rng.uniform(-0.04, 0.04, 2)
    k = rng.uniform(0.94, 1.04)
    cx, cy = ox, oy
    if s.anatomy == "chest":
        img = paint(
            img,
            np.maximum(c.ellipse(cx, cy + 0.2, 0.93 * k, 1.05), c.ellipse(cx, cy - 0.9, 0.2, 0.3)),
            0.5,
        )
        for sx in (-1, 1):
            img = paint(img, c.ellipse(cx + sx * 0.78, cy - 0.72, 0.3, 0.16), 0.55)
            img = paint(img, c.ellipse(cx + sx * 0.86, cy - 0.62, 0.1), 0.85)
        lungs = {}
        for sx in (-1, 1):
            lung = (cx + sx * 0.4 * k, cy, 0.29 * k, 0.6)
            ribs = 0.07 * np.cos((c.y - 0.25 * (c.x - lung[0]) ** 2) * np.pi * 7) ** 8
            img = paint(img, c.ellipse(*lung), 0.16 + ribs + 0.02 * c.noise(2))
            lungs[sx] = lung
        img = paint(img, c.ellipse(cx, cy - 0.25, 0.12, 0.6, power=4), 0.74)  # mediastinum
        big = s.finding == "cardiomegaly"
        img = paint(
            img,
            c.ellipse(
                cx + (0.16 if big else 0.1), cy + 0.36, 0.43 if big else 0.26, 0.3 if big else 0.22
            ),
            0.72,
        )
        img = img + 0.08 * c.ellipse(cx, cy, 0.05, 1.2, power=4)  # spine through the mediastinum
        for sx in (-1, 1):
            img = paint(img, c.ellipse(cx + sx * 0.36, cy - 0.63, 0.3, 0.03, angle=sx * 0.22), 0.86)
        if s.finding == "pneumonia":
            for sx in side_signs(s.side):
                lcx, lcy, lrx, lry = lungs[sx]
                r = rng.uniform(0.2, 0.26)
                lx, ly = lcx + rng.uniform(-0.05, 0.05), lcy + rng.uniform(-0.25, 0.3)
                patch = c.blur(c.ellipse(lx, ly, r, r * 1.3, wobble=c.wobble(0.15)), 2.5)
                img = img + 0.4 * patch * c.ellipse(lcx, lcy, lrx, lry) * (0.8 + 0.2 * c.noise(1.5))
        if s.finding == "effusion":  # fluid fills the lung base; its level rises with the grade
            for sx in side_signs(s.side):
                lcx, lcy, lrx, lry = lungs[sx]
                level = lcy + lry - (0.3, 0.58, 0.92)[s.grade] * lry * rng.uniform(0.95, 1.05)
                meniscus = level - 0.12 * np.clip(sx * (c.x - lcx) / lrx + 1, 0, 2) / 2
                img = paint(img, c.ellipse(lcx, lcy, lrx, lry) * (c.y > meniscus), 0.64)
        marker = Image.new("L", (c.size, c.size))
        cell = c.size * 0.08
        draw = ImageDraw.Draw(marker)
        draw.rectangle([cell * 0.6, cell * 0.6, cell * 1.8, cell * 1.8], fill=255)
        draw.text((cell * 0.95, cell * 0.75), "R", fill=80)  # lead side marker: patient's right
        img = paint(img, np.asarray(marker, dtype=np.float64) / 255, 1.0)
    elif s.anatomy == "hand":  # PA hand: soft-tissue outline, phalanges, metacarpals, carpals
        m = rng.choice([-1, 1])  # left or right hand
        img = paint(img, c.ellipse(cx, cy + 0.32, 0.4, 0.34), 0.32)
        img = paint(img, c.ellipse(cx, cy + 0.95, 0.28, 0.35, power=4), 0.32)
        bones = [
            c.ellipse(cx + 0.1 * (j % 3 - 1), cy + 0.6 + 0.1 * (j // 3), 0.055) for j in range(6)
        ]
        bones += [c.ellipse(cx + sx * 0.1, cy + 1.0, 0.07, 0.25, power=4) for sx in (-1, 1)]
        fingers = (
            (-0.27, 0.05, -0.2, 0.58),
            (-0.09, 0.0, -0.07, 0.68),
            (0.09, 0.0, 0.07, 0.64),
            (0.27, 0.05, 0.2, 0.52),
            (-0.4, 0.3, -0.95, 0.5),
        )  # base x, base y, angle, length
        for bx, by, a, length in fingers:
            bx, by, a = cx + m * bx, cy + by, m * a
            tx, ty = bx + np.sin(a) * length, by - np.cos(a) * length
            img = paint(img, c.capsule(bx, by, tx, ty, 0.08), 0.32)
            for f0, f1 in ((0.02, 0.4), (0.45, 0.72), (0.76, 0.95)):
                bones.append(
                    c.capsule(
                        bx + (tx - bx) * f0,
                        by + (ty - by) * f0,
                        bx + (tx - bx) * f1,
                        by + (ty - by) * f1,
                        0.042,
                    )
                )
            bones.append(c.capsule(cx + 0.4 * (bx - cx), cy + 0.52, bx, by - 0.02, 0.042))
        img = paint(img, np.max(bones, axis=0), 0.8)
    else:  # knee, frontal
        img = paint(img, c.ellipse(cx, cy, 0.5 * k, 1.3, power=4), 0.33)
        for bx, by, brx, bry in (
            (cx, cy - 0.7, 0.15, 0.6),
            (cx, cy - 0.12, 0.36, 0.15),
            (cx, cy + 0.18, 0.34, 0.1),
            (cx - 0.02, cy + 0.7, 0.15, 0.55),
            (cx + 0.28, cy + 0.7, 0.05, 0.5),
            (cx + 0.28, cy + 0.27, 0.07, 0.06),
        ):
            img = paint(img, c.ellipse(bx, by, brx, bry, power=4 if bry > 0.3 else 2), 0.8)
        img = paint(img, c.ellipse(cx, cy - 0.03, 0.07, 0.06), 0.35)  # intercondylar notch
        img = img + 0.08 * c.ellipse(cx, cy - 0.2, 0.15, 0.12)  # patella seen through the femur
    img = c.blur(img, 0.8) * rng.uniform(0.9, 1.05) + rng.uniform(0.012, 0.02) * c.noise(0.6)
    return Phantom(np.clip(img, 0, 1))


DOPPLER_COLOURS = {"toward": (0.92, 0.12, 0.08), "away": (0.12, 0.35, 0.95)}


def _ultrasound(c: Canvas, s: Scene) -> Phantom:
    rng = c.rng
    apex = -1.1
    r = np.hypot(c.x, c.y - apex)
    theta = np.arctan2(c.x, c.y - apex)
    half = rng.uniform(0.58, 0.66)
    fan = np.clip((half - np.abs(theta)) * r / c.px + 0.5, 0, 1) * (r > 0.25) * (r < 2.05)
    echo = np.full((c.size, c.size), 0.5 * rng.uniform(0.85, 1.1))
    ox, oy = rng.uniform(-0.06, 0.06, 2)
    if s.anatomy == "kidney":
        echo = paint(echo, c.ellipse(ox, 0.25 + oy, 0.58, 0.3, angle=0.1), 0.9)  # capsule
        echo = paint(echo, c.ellipse(ox, 0.25 + oy, 0.54, 0.26, angle=0.1), 0.25)  # cortex
        for j in range(-2, 3):
            echo = paint(
                echo, c.ellipse(ox + 0.2 * j, 0.25 + oy + 0.12 * np.cos(j), 0.07, 0.05), 0.1
            )
        echo = paint(echo, c.ellipse(ox, 0.25 + oy, 0.3, 0.09, angle=0.1), 0.95)  # sinus fat
    elif s.anatomy == "fetal head":
        echo = paint(echo, (r > 0.5) * 1.0, 0.03)  # amniotic fluid
        echo = paint(echo, c.ellipse(ox, 0.3 + oy, 0.5, 0.4, angle=0.2), 1.0)  # skull
        echo = paint(echo, c.ellipse(ox, 0.3 + oy, 0.45, 0.35, angle=0.2), 0.18)
        echo = paint(echo, c.ellipse(ox, 0.3 + oy, 0.4, 0.012, angle=0.2), 0.75)  # midline echo
    else:  # liver, with hepatic vessels and the bright diaphragm at depth
        echo = paint(echo, np.clip(1 - np.abs(r - 1.8) / 0.04, 0, 1), 1.0)
        echo = paint(echo, (r > 1.84) * 1.0, 0.15)
        lesion = None
        if s.finding:
            rad = lesion_radius(s, rng)
            lesion = (rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.55) - (rad - 0.15) * 0.5, rad)
        for _ in range(3):
            vx, vy = rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.8)
            if lesion and np.hypot(vx - lesion[0], vy - lesion[1]) < lesion[2] + 0.25:
                continue
            echo = paint(
                echo,
                c.ellipse(vx, vy, rng.uniform(0.08, 0.15), 0.05, angle=rng.uniform(0, 3)),
                0.05,
            )
        if lesion:
            lx, ly, rad = lesion
            if (
                s.finding == "cyst"
            ):  # anechoic, with brighter tissue behind it (posterior enhancement)
                behind = (c.y > ly) * np.clip(1 - np.abs(c.x - lx) / rad, 0, 1) * (c.y < ly + 0.6)
                echo = echo * (1 + 0.45 * behind)
                echo = paint(echo, c.ellipse(lx, ly, rad), 0.02)
            else:
                echo = paint(echo, c.ellipse(lx, ly, rad, wobble=c.wobble(0.08)), 0.95)
        if s.attribute:  # colour Doppler: a large vessel inside a colour box
            vessel = c.ellipse(ox, 0.2 + oy, 0.62, 0.09, angle=rng.uniform(-0.25, 0.25), power=3)
            echo = paint(echo, vessel, 0.03)
    speckle = c.blur(rng.rayleigh(0.8, (c.size, c.size)), 0.6, 1.2)
    depth = 1 - 0.3 * np.clip((r - 0.25) / 1.8, 0, 1)
    gray = np.clip(echo * speckle * depth * rng.uniform(0.9, 1.15), 0, 1) * fan
    for j in range(5):  # depth scale dots at the right edge, as ultrasound screens show them
        gray = paint(gray, c.ellipse(0.9, -0.6 + 0.35 * j, 0.012), 0.8)
    if not s.attribute:
        return Phantom(gray)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    box = c.ellipse(ox, 0.2 + oy, 0.72, 0.22, power=8)
    outline = np.clip(box * (1 - box) * 4, 0, 1)
    rgb = paint(rgb, outline * fan, (0.75, 0.75, 0.75))
    if s.attribute in DOPPLER_COLOURS:
        flow = vessel * box * (0.65 + 0.35 * c.noise(1.5, 3) ** 2).clip(0, 1)
        rgb = paint(rgb, flow * fan, DOPPLER_COLOURS[s.attribute])
    return Phantom(np.clip(rgb, 0, 1))


# --- optical modalities ---------------------------------------------------------------------------

SKIN_TONES = {
    "light": (0.93, 0.77, 0.67),
    "intermediate": (0.78, 0.55, 0.4),
    "dark": (0.42, 0.28, 0.19),
}


def _dermoscopy(c: Canvas, s: Scene) -> Phantom:
    rng = c.rng
    base = np.asarray(SKIN_TONES[s.attribute or "light"]) * rng.uniform(0.95, 1.05, 3)
    img = base * (1 + 0.06 * c.noise(8)[..., None] + 0.03 * c.noise(1)[..., None])
    if s.anatomy == "acral":  # parallel furrows of thick, hairless, yellowish palm and sole skin
        phi, period = rng.uniform(0, np.pi), rng.uniform(0.2, 0.25)
        u = c.x * np.cos(phi) + c.y * np.sin(phi) + 0.03 * c.noise(6)
        img = img * (1 - 0.35 * (np.cos(2 * np.pi * u / period) ** 2))[..., None] * (1.03, 1.0, 0.9)
    elif s.anatomy == "nail":
        plate = c.ellipse(rng.uniform(-0.05, 0.05), 0.05, 0.62, 0.85, power=3)
        ridges = 1 - 0.05 * np.cos(c.x * 60) ** 2
        img = paint(img, plate, np.asarray((0.95, 0.78, 0.78))[None, None] * ridges[..., None])
        img = paint(img, c.ellipse(0, 0.75, 0.4, 0.18) * plate, (0.97, 0.92, 0.9))  # lunula
    cx, cy = rng.uniform(-0.12, 0.12, 2)
    if s.finding == "nevus":
        r = (0.18, 0.42, 0.72)[s.grade] * rng.uniform(0.92, 1.08)
        lesion = c.ellipse(
            cx, cy, r, r * rng.uniform(0.85, 1), angle=rng.uniform(0, 3), wobble=c.wobble(0.04)
        )
        network = 1 - 0.18 * (np.cos(c.x * 45) * np.cos(c.y * 45) > 0.3)
        img = paint(img, lesion, base * (0.5, 0.38, 0.32) * network[..., None])
    elif s.finding == "melanoma":  # large, asymmetric, black and blue-grey areas
        r = rng.uniform(0.42, 0.55)
        lesion = c.ellipse(
            cx, cy, r, r * rng.uniform(0.7, 0.9), angle=rng.uniform(0, 3), wobble=c.wobble(0.25)
        )
        img = paint(img, lesion, (0.28, 0.15, 0.09))
        patches = c.noise(5)
        img = paint(img, lesion * (patches > 0.5), (0.07, 0.05, 0.05))
        img = paint(img, lesion * (patches < -0.6), (0.42, 0.47, 0.58))
    elif s.finding == "bcc":  # pink translucent plaque with red branching vessels
        r = rng.uniform(0.35, 0.5)
        lesion = c.ellipse(cx, cy, r, r * 0.85, wobble=c.wobble(0.1))
        img = paint(img, lesion, (0.92, 0.58, 0.58))
        trees = []
        for _ in range(4):
            a = rng.uniform(0, 6.3)
            pts = [
                (
                    cx + r * 0.8 * t * np.cos(a + 0.6 * np.sin(5 * t)),
                    cy + r * 0.8 * t * np.sin(a + 0.6 * np.sin(5 * t)),
                )
                for t in np.linspace(0, 1, 8)
            ]
            trees.append(pts)
        img = paint(img, c.lines(trees, [0.025] * 4) * lesion, (0.72, 0.1, 0.15))
    count = rng.integers(0, 4) if s.anatomy == "trunk" else 0
    hairs = [[(rng.uniform(-1, 1), -1.0), (rng.uniform(-1, 1), 1.0)] for _ in range(count)]
    if hairs:
        img = paint(img, c.lines(hairs, [0.012] * len(hairs)), (0.15, 0.1, 0.08))
    img = img * c.ellipse(0, 0, 0.97)[..., None]  # the round dermatoscope field
    return Phantom(np.clip(img, 0, 1))


def _fundus(c: Canvas, s: Scene) -> Phantom:
    rng = c.rng
    rr = c.x**2 + c.y**2
    base = np.asarray((0.85, 0.38, 0.13)) * rng.uniform(0.9, 1.08, 3)
    img = base * ((1 - 0.35 * rr) * (1 + 0.05 * c.noise(4)))[..., None]
    nasal = 1 if s.attribute == "right" else -1  # a right eye's disc lies to the image right
    disc, macula = {
        "disc": ((0, 0), (-0.5 * nasal, 0.03)),
        "macula": ((0.5 * nasal, -0.03), (0, 0)),
        "periphery": (None, None),
    }[s.anatomy]
    jitter = rng.uniform(-0.04, 0.04, 2)
    if macula is not None:
        mx, my = macula[0] + jitter[0], macula[1] + jitter[1]
        img = img * (1 - 0.4 * np.exp(-((c.x - mx) ** 2 + (c.y - my) ** 2) / 0.03))[..., None]
    vessels = []
    if disc is not None:
        dx, dy = disc[0] + jitter[0], disc[1] + jitter[1]
        for sy in (-1, 1):  # temporal arcades curve around the macula
            for spread in (0.32, 0.5):
                t = np.linspace(0, 1, 12)
                vessels.append(
                    list(
                        zip(
                            dx - nasal * 1.2 * t,
                            dy + sy * spread * np.sin(np.pi * t * 0.8),
                            strict=True,
                        )
                    )
                )
            vessels.append(list(zip(dx + nasal * 0.5 * t, dy + sy * 0.35 * t, strict=True)))
    else:
        for _ in range(4):
            y0, y1 = rng.uniform(-0.8, 0.8, 2)
            vessels.append([(-1.0, y0), (0.0, (y0 + y1) / 2 + rng.uniform(-0.2, 0.2)), (1.0, y1)])
    widths = [0.035 if j % 3 != 2 else 0.025 for j in range(len(vessels))]
    img = paint(img, c.lines(vessels, widths), (0.58, 0.1, 0.05))
    if disc is not None:
        img = paint(img, c.ellipse(dx, dy, 0.12, 0.14), (0.98, 0.86, 0.58))
        img = paint(img, c.ellipse(dx + 0.02, dy, 0.05, 0.06), (1.0, 0.96, 0.82))

    def spots(count, rmin, rmax, colour, near=None):
        nonlocal img
        shapes = c.blank()
        for _ in range(count):
            if near is None:
                a, d = rng.uniform(0, 6.3), 0.8 * np.sqrt(rng.uniform(0.02, 1))
                sx, sy = d * np.cos(a), d * np.sin(a)
            else:
                sx, sy = near[0] + rng.normal(0, 0.16), near[1] + rng.normal(0, 0.13)
            c.ellipse(sx, sy, rng.uniform(rmin, rmax), out=shapes)
        img = paint(img, shapes, colour)

    if s.finding == "dr":  # blot haemorrhages and hard exudates; their number rises with severity
        spots((3, 12, 30)[s.grade], 0.05, 0.08, (0.3, 0.02, 0.02))
        spots((0, 6, 16)[s.grade], 0.03, 0.05, (0.98, 0.9, 0.45))
        if s.grade == 2:
            spots(4, 0.07, 0.09, (0.95, 0.9, 0.85))
    elif s.finding == "amd":  # yellow drusen clustered on the macula
        spots(rng.integers(14, 22), 0.035, 0.065, (0.97, 0.87, 0.45), near=(mx, my))
    img = img * c.ellipse(0, 0, 0.93)[..., None]
    return Phantom(np.clip(img + 0.01 * c.noise(0.7)[..., None], 0, 1))


# OCT layers from the inner surface down: (name, thickness, brightness).
OCT_LAYERS = (
    ("rnfl", 0.05, 0.78),
    ("ipl", 0.08, 0.45),
    ("inl", 0.05, 0.2),
    ("opl", 0.03, 0.55),
    ("onl", 0.09, 0.15),
    ("ez", 0.025, 0.8),
    ("os", 0.02, 0.3),
    ("rpe", 0.045, 0.97),
)


def _oct(c: Canvas, s: Scene) -> Phantom:
    rng = c.rng
    xs = c.x[0]
    # Bruch's membrane, the retina's floor: a gently curved, tilted line; layers stack up from it.
    floor = rng.uniform(0.08, 0.2) + rng.uniform(0.05, 0.15) * xs**2 + rng.uniform(-0.06, 0.06) * xs
    thick = {name: np.full(c.size, 1.5 * t * rng.uniform(0.95, 1.1)) for name, t, _ in OCT_LAYERS}
    lift_sub = np.zeros(c.size)  # new vessels lifting the retina off the RPE
    xc = rng.uniform(-0.2, 0.2)

    def bump(width):
        return np.exp(-(((xs - xc) / width) ** 2))

    cup = np.zeros(c.size)
    cysts = []
    pit_at, cup_at = {"macula": (xc, None), "nerve head": (None, xc)}.get(s.anatomy, (None, None))
    if s.attribute in ("left", "right"):  # wide scan through fovea and disc; disc on the nasal side
        nasal = 1 if s.attribute == "right" else -1
        pit_at, cup_at = -0.25 * nasal + xc / 4, 0.62 * nasal + xc / 4
    if pit_at is not None:  # foveal pit: the inner layers thin out at the centre
        pit = 1 - 0.92 * np.exp(-(((xs - pit_at) / 0.25) ** 2))
        for name in ("rnfl", "ipl", "inl", "opl"):
            thick[name] = thick[name] * pit
        thick["onl"] = thick["onl"] * (1 + 0.4 * (1 - pit))
    if cup_at is not None:  # deep cup where the layers end, thick nerve fibres at its rim
        thick["rnfl"] = thick["rnfl"] * (1 + 3 * np.exp(-(((xs - cup_at) / 0.3) ** 2)))
        cup = np.clip(1 - np.abs(xs - cup_at) / 0.22, 0, 1) ** 0.7
    if pit_at is None and cup_at is None:
        thick = {name: t * 0.85 for name, t in thick.items()}
    if s.finding == "cnv":
        lift_sub = 0.17 * bump(0.22)
    elif s.finding == "dme":
        thick["onl"], thick["inl"] = thick["onl"] * 1.9, thick["inl"] * 2.2
        cysts = [
            (xc + off, rng.uniform(0.07, 0.11), rng.uniform(0.045, 0.06)) for off in (-0.3, 0, 0.3)
        ]
    elif s.finding == "fluid":
        rx, ry = ((0.08, 0.04), (0.15, 0.075), (0.26, 0.12))[s.grade]
        thick["onl"] = thick["onl"] + (2 * ry + 0.02) * bump(rx * 1.6)
        cysts = [(xc, rx, ry)]
    bands, lower = {}, floor
    for name, _, _ in reversed(OCT_LAYERS):
        if name == "os":
            bands["sub"] = (lower - lift_sub, lower)
            lower = lower - lift_sub
        bands[name] = (lower - thick[name], lower)
        lower = lower - thick[name]
    y = c.y
    img = np.full((c.size, c.size), 0.04)
    for name, _, value in OCT_LAYERS:
        upper, low = bands[name]
        img = np.where((y >= upper) & (y < low), value, img)
    depth = y - floor
    choroid = 0.5 * np.exp(-np.clip(depth, 0, None) / 0.28) * (1 + 0.25 * c.noise(2.5, 4))
    img = np.where(depth > 0, choroid, img)
    sub = (y >= bands["sub"][0]) & (y < bands["sub"][1])
    img = np.where(sub, 0.88 if s.finding == "cnv" else 0.03, img)
    for cx_, rx, ry in cysts:
        cy_ = float(np.interp(cx_, xs, (bands["inl"][0] + bands["onl"][1]) / 2))
        img = paint(img, c.ellipse(cx_, cy_, rx, ry), 0.03)
    cut = lower + cup * (floor + 0.15 - lower)  # vitreous fills the cup, walls slope inwards
    img = np.where(y < cut, 0.04, img)
    speckle = c.blur(rng.gamma(3.0, 1 / 3.0, (c.size, c.size)), 0.5, 1.0)
    img = img * speckle * rng.uniform(0.85, 1.05) + 0.03 * np.abs(c.noise(0.7))
    return Phantom(np.clip(img, 0, 1))


# Stain palettes: background stroma, cytoplasm, nuclei, empty lumen.
STAINS = {
    "he": ((0.93, 0.62, 0.74), (0.96, 0.76, 0.84), (0.33, 0.18, 0.52), (0.98, 0.96, 0.97)),
    "ihc": ((0.87, 0.87, 0.91), (0.62, 0.4, 0.2), (0.36, 0.42, 0.68), (0.98, 0.98, 0.98)),
    "trichrome": ((0.35, 0.52, 0.86), (0.86, 0.32, 0.36), (0.2, 0.14, 0.24), (0.97, 0.97, 0.98)),
}


def _microscopy(c: Canvas, s: Scene) -> Phantom:
    rng = c.rng
    if s.anatomy == "blood":  # Wright-stained smear: red cells with pale centres, few white cells
        img = np.ones((c.size, c.size, 3)) * (0.95, 0.92, 0.88)
        anemia = s.finding == "anemia"
        keep, scale, pallor = (0.35, 0.75, 0.65) if anemia else (0.92, 1.0, 0.4)
        cells, centres = c.blank(), c.blank()
        for gx in np.arange(-0.85, 0.9, 0.27):
            for gy in np.arange(-0.85, 0.9, 0.27):
                px, py = gx + rng.uniform(-0.07, 0.07), gy + rng.uniform(-0.07, 0.07)
                rad = rng.uniform(0.085, 0.11) * scale
                if rng.random() < keep:
                    c.ellipse(px, py, rad, out=cells)
                    c.ellipse(px, py, rad * pallor, out=centres)
        img = paint(img, cells, (0.94, 0.72, 0.74) if anemia else (0.88, 0.48, 0.53))
        img = paint(img, centres, (0.93, 0.84, 0.82))
        count = rng.integers(7, 11) if s.finding == "leukemia" else rng.integers(0, 2)
        spots = [
            (rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8), rng.uniform(0.13, 0.17))
            for _ in range(count)
        ]
        blasts = c.blank()
        for px, py, rad in spots:
            c.ellipse(px, py, rad, out=blasts)
        img = paint(img, blasts, (0.75, 0.72, 0.88))
        nuclei = c.blank()
        for px, py, rad in spots:
            c.ellipse(px, py, rad * 0.8, wobble=c.wobble(0.1), out=nuclei)
        img = paint(img, nuclei, (0.4, 0.22, 0.6))
    else:
        stroma, cyto, nucleus, lumen = (np.asarray(v) for v in STAINS[s.attribute or "he"])
        img = stroma * (1 + 0.05 * c.noise(3)[..., None])
        nuclei = c.blank()
        if s.anatomy == "muscle":  # long parallel fibres with nuclei at their edges
            phi = rng.uniform(0, np.pi)
            u = -c.x * np.sin(phi) + c.y * np.cos(phi)
            fibre = np.floor(u / 0.2)
            img = cyto * (1 + 0.06 * np.cos(fibre * 2.3))[..., None]
            img = paint(img, (np.abs(u / 0.2 - fibre - 0.5) > 0.45) * 1.0, lumen)
            for _ in range(25):
                v, offset = rng.uniform(-1.4, 1.4), rng.integers(-5, 6) * 0.2 + 0.03
                nx, ny = (
                    v * np.cos(phi) - offset * np.sin(phi),
                    v * np.sin(phi) + offset * np.cos(phi),
                )
                c.ellipse(nx, ny, 0.06, 0.018, angle=phi, out=nuclei)
        else:  # colon: glands (white lumen in a ring of nuclei); a higher carcinoma grade erodes them
            grade = s.grade if s.finding == "carcinoma" else -1
            n_glands = {-1: 5, 0: 5, 1: 2, 2: 0}[grade]
            scatter = {-1: 25, 0: 40, 1: 110, 2: 260}[grade]
            spots = [(-0.5, -0.45), (0.45, -0.5), (0.0, 0.05), (-0.5, 0.5), (0.5, 0.45)]
            rng.shuffle(spots)
            lumens, rims = c.blank(), c.blank()
            for gx, gy in spots[:n_glands]:
                gx, gy = gx + rng.uniform(-0.08, 0.08), gy + rng.uniform(-0.08, 0.08)
                grx, gry, ga = rng.uniform(0.2, 0.26), rng.uniform(0.15, 0.2), rng.uniform(0, 3)
                wob = c.wobble(0.15 if grade >= 1 else 0.04)
                c.ellipse(gx, gy, grx + 0.08, gry + 0.08, angle=ga, wobble=wob, out=rims)
                c.ellipse(gx, gy, grx, gry, angle=ga, wobble=wob, out=lumens)
                for a in np.linspace(0, 2 * np.pi, 18, endpoint=False):
                    ex, ey = (grx + 0.05) * np.cos(a), (gry + 0.05) * np.sin(a)
                    px, py = (
                        gx + ex * np.cos(ga) - ey * np.sin(ga),
                        gy + ex * np.sin(ga) + ey * np.cos(ga),
                    )
                    c.ellipse(px, py, 0.04, 0.025, angle=a + ga, out=nuclei)
            img = paint(img, rims, cyto)
            img = paint(img, lumens, lumen)
            size = 1.0 if grade < 1 else 1.5
            for _ in range(scatter):
                px, py, rad = (
                    rng.uniform(-1, 1),
                    rng.uniform(-1, 1),
                    rng.uniform(0.022, 0.032) * size,
                )
                c.ellipse(
                    px, py, rad, rad * rng.uniform(0.7, 1), angle=rng.uniform(0, 3), out=nuclei
                )
        img = paint(img, nuclei, nucleus)
    img = c.blur(img, 0.6) * rng.uniform(0.94, 1.04) + 0.015 * c.noise(0.8)[..., None]
    return Phantom(np.clip(img, 0, 1))


RENDERERS = {
    "CT": _ct,
    "MRI": _mri,
    "X-Ray": _xray,
    "Ultrasound": _ultrasound,
    "Dermoscopy": _dermoscopy,
    "Fundus Photography": _fundus,
    "OCT": _oct,
    "Microscopy": _microscopy,
}


def render(scene: Scene, rng: np.random.Generator, size: int = 224, z: float = 0.0) -> Phantom:
    """Draw `scene` at `size` x `size`; `z` (CT only) moves the slice through the volume."""
    canvas = Canvas(size, rng)
    if scene.modality == "CT":
        return _ct(canvas, scene, z)
    return RENDERERS[scene.modality](canvas, scene)
