"""Phantom drawers for the radiology modalities: CT, MRI, X-ray and ultrasound.

Each `draw_<modality>(canvas, scene)` draws one `Scene` on a `Canvas` and returns a `Phantom`:
CT in Hounsfield units with its display window (`draw_ct` also takes `z`, the slice offset
through the volume), the others as floats in [0, 1]. Sides follow the radiological convention:
the patient's left is the image right. `RENDERERS` maps each modality name to its drawer.

Used through `trainer.phantoms.render.render`; see that module for a one-line example.
"""

import numpy as np
from PIL import Image, ImageDraw

from trainer.phantoms.canvas import Canvas, Phantom, Scene, lesion_radius, paint, place, side_signs

# CT display windows (centre, width) in HU per anatomy.
CT_WINDOWS = {"head": (40.0, 100.0), "chest": (-300.0, 1400.0), "abdomen": (50.0, 250.0)}
CT_PADDING_HU = -1024.0  # outside the reconstruction circle; stored as 0 after the +1024 shift


def draw_ct(c: Canvas, s: Scene, z: float = 0.0) -> Phantom:
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
    found = []
    if f:
        r = lesion_radius(s, rng)
        r = float(np.sqrt(max(r**2 - (0.035 * z) ** 2, 0.0)))  # a sphere cut at slice offset z
        for sx in side_signs(s.side):
            rcx, rcy, rrx, rry = regions[sx]
            if f == "effusion":  # dependent fluid fills the posterior (lower) part of the lung
                lung = c.ellipse(rcx, rcy, rrx, rry)
                level = rcy + rry * (0.55 - 0.5 * s.grade / 2) + 0.06 * (c.x - rcx) ** 2 / rrx
                found.append(lung * (c.y > level))
                hu = paint(hu, found[-1], 15)
                continue
            if r <= 0:
                continue
            if s.anatomy == "head":
                lx, ly = place(rng, rcx, rcy, rrx, rry, r, sx, lateral=(0.5, 0.9))
            else:  # lungs and liver: keep the lesion inside the organ, clear of its edges
                lx, ly = place(rng, rcx, rcy, rrx, rry, r, lateral=(0.0, 0.5))
            value = {"hemorrhage": 80, "infarct": 8, "lung_mass": 40, "liver_cyst": 5}.get(f)
            value = (230 if contrast else 170) if f == "liver_mass" else value
            found.append(c.ellipse(lx, ly, r, wobble=c.wobble(0.08)))
            hu = paint(hu, found[-1], value)
    hu = hu + rng.uniform(4, 8) * c.noise(0.7)
    hu[c.x**2 + c.y**2 > 1.0] = CT_PADDING_HU  # circular reconstruction field of view
    return Phantom(hu, CT_WINDOWS[s.anatomy], found)


# Relative MRI signal per tissue: T1 (fat bright, fluid dark) and T2 (fluid bright).
MRI_TISSUE = {
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


def draw_mri(c: Canvas, s: Scene) -> Phantom:
    rng, t = c.rng, MRI_TISSUE[s.attribute or "t1"]
    img = np.zeros((c.size, c.size))
    ox, oy = rng.uniform(-0.05, 0.05, 2)
    k = rng.uniform(0.92, 1.03)
    found = []
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
                found.append(c.ellipse(lx, ly, r, wobble=c.wobble(0.1)))
                img = paint(img, found[-1], 0.97)
                img = paint(img, c.ellipse(lx, ly, r * 0.5), 0.8) if r > 0.1 else img
            else:
                found.append(c.ellipse(lx, ly, r))
                img = paint(img, found[-1], 0.05)
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
    return Phantom(np.clip(img, 0, 1), findings=found)


def draw_xray(c: Canvas, s: Scene) -> Phantom:
    rng = c.rng
    img = np.full((c.size, c.size), 0.04)
    ox, oy = rng.uniform(-0.04, 0.04, 2)
    k = rng.uniform(0.94, 1.04)
    cx, cy = ox, oy
    found = []
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
        heart = c.ellipse(
            cx + (0.16 if big else 0.1), cy + 0.36, 0.43 if big else 0.26, 0.3 if big else 0.22
        )
        img = paint(img, heart, 0.72)
        if big:  # the enlarged heart is the finding
            found.append(heart)
        img = img + 0.08 * c.ellipse(cx, cy, 0.05, 1.2, power=4)  # spine through the mediastinum
        for sx in (-1, 1):
            img = paint(img, c.ellipse(cx + sx * 0.36, cy - 0.63, 0.3, 0.03, angle=sx * 0.22), 0.86)
        if s.finding == "pneumonia":
            for sx in side_signs(s.side):
                lcx, lcy, lrx, lry = lungs[sx]
                r = rng.uniform(0.2, 0.26)
                lx, ly = lcx + rng.uniform(-0.05, 0.05), lcy + rng.uniform(-0.25, 0.3)
                patch = c.blur(c.ellipse(lx, ly, r, r * 1.3, wobble=c.wobble(0.15)), 2.5)
                found.append(patch * c.ellipse(lcx, lcy, lrx, lry))
                img = img + 0.4 * found[-1] * (0.8 + 0.2 * c.noise(1.5))
        if s.finding == "effusion":  # fluid fills the lung base; its level rises with the grade
            for sx in side_signs(s.side):
                lcx, lcy, lrx, lry = lungs[sx]
                level = lcy + lry - (0.3, 0.58, 0.92)[s.grade] * lry * rng.uniform(0.95, 1.05)
                meniscus = level - 0.12 * np.clip(sx * (c.x - lcx) / lrx + 1, 0, 2) / 2
                found.append(c.ellipse(lcx, lcy, lrx, lry) * (c.y > meniscus))
                img = paint(img, found[-1], 0.64)
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
    return Phantom(np.clip(img, 0, 1), findings=found)


DOPPLER_COLOURS = {"toward": (0.92, 0.12, 0.08), "away": (0.12, 0.35, 0.95)}


def draw_ultrasound(c: Canvas, s: Scene) -> Phantom:
    rng = c.rng
    apex = -1.1
    r = np.hypot(c.x, c.y - apex)
    theta = np.arctan2(c.x, c.y - apex)
    half = rng.uniform(0.58, 0.66)
    fan = np.clip((half - np.abs(theta)) * r / c.px + 0.5, 0, 1) * (r > 0.25) * (r < 2.05)
    echo = np.full((c.size, c.size), 0.5 * rng.uniform(0.85, 1.1))
    ox, oy = rng.uniform(-0.06, 0.06, 2)
    found = []
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
                found.append(c.ellipse(lx, ly, rad))
                echo = paint(echo, found[-1], 0.02)
            else:
                found.append(c.ellipse(lx, ly, rad, wobble=c.wobble(0.08)))
                echo = paint(echo, found[-1], 0.95)
        if s.attribute:  # colour Doppler: a large vessel inside a colour box
            vessel = c.ellipse(ox, 0.2 + oy, 0.62, 0.09, angle=rng.uniform(-0.25, 0.25), power=3)
            echo = paint(echo, vessel, 0.03)
    speckle = c.blur(rng.rayleigh(0.8, (c.size, c.size)), 0.6, 1.2)
    depth = 1 - 0.3 * np.clip((r - 0.25) / 1.8, 0, 1)
    gray = np.clip(echo * speckle * depth * rng.uniform(0.9, 1.15), 0, 1) * fan
    for j in range(5):  # depth scale dots at the right edge, as ultrasound screens show them
        gray = paint(gray, c.ellipse(0.9, -0.6 + 0.35 * j, 0.012), 0.8)
    found = [mask * fan for mask in found]  # what the fan shows of it
    if not s.attribute:
        return Phantom(gray, findings=found)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    box = c.ellipse(ox, 0.2 + oy, 0.72, 0.22, power=8)
    outline = np.clip(box * (1 - box) * 4, 0, 1)
    rgb = paint(rgb, outline * fan, (0.75, 0.75, 0.75))
    if s.attribute in DOPPLER_COLOURS:
        flow = vessel * box * (0.65 + 0.35 * c.noise(1.5, 3) ** 2).clip(0, 1)
        rgb = paint(rgb, flow * fan, DOPPLER_COLOURS[s.attribute])
    return Phantom(np.clip(rgb, 0, 1), findings=found)


RENDERERS = {
    "CT": draw_ct,
    "MRI": draw_mri,
    "X-Ray": draw_xray,
    "Ultrasound": draw_ultrasound,
}
