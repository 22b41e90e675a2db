"""Phantom drawers for the optical modalities: dermoscopy, fundus photography, OCT, microscopy.

Each `draw_<modality>(canvas, scene)` draws one `Scene` on a `Canvas` and returns a `Phantom` of
floats in [0, 1]: RGB for dermoscopy, fundus and microscopy, grey for OCT B-scans. `RENDERERS`
maps each modality name to its drawer.

Used through `trainer.phantoms.render.render`; see that module for a one-line example.
"""

import numpy as np

from trainer.phantoms.canvas import Canvas, Phantom, Scene, paint

SKIN_TONES = {
    "light": (0.93, 0.77, 0.67),
    "intermediate": (0.78, 0.55, 0.4),
    "dark": (0.42, 0.28, 0.19),
}


def draw_dermoscopy(c: Canvas, s: Scene) -> Phantom:
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
    lesion = None
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
    return Phantom(np.clip(img, 0, 1), findings=[] if lesion is None else [lesion])


def draw_fundus(c: Canvas, s: Scene) -> Phantom:
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

    found = []

    def spots(count, rmin, rmax, colour, near=None):
        nonlocal img
        shapes = c.blank()
        for _ in range(count):
            if near is None:
                a, d = rng.uniform(0, 6.3), 0.8 * np.sqrt(rng.uniform(0.02, 1))
                sx, sy = d * np.cos(a), d * np.sin(a)
            else:
                sx, sy = near[0] + rng.normal(0, 0.16), near[1] + rng.normal(0, 0.13)
            found.append(c.ellipse(sx, sy, rng.uniform(rmin, rmax)))
            np.maximum(shapes, found[-1], out=shapes)
        img = paint(img, shapes, colour)

    if s.finding == "dr":  # blot haemorrhages and hard exudates; their number rises with severity
        spots((3, 12, 30)[s.grade], 0.05, 0.08, (0.3, 0.02, 0.02))
        spots((0, 6, 16)[s.grade], 0.03, 0.05, (0.98, 0.9, 0.45))
        if s.grade == 2:
            spots(4, 0.07, 0.09, (0.95, 0.9, 0.85))
    elif s.finding == "amd":  # yellow drusen clustered on the macula
        spots(rng.integers(14, 22), 0.035, 0.065, (0.97, 0.87, 0.45), near=(mx, my))
    field = c.ellipse(0, 0, 0.93)
    img = img * field[..., None]
    found = [mask * field for mask in found]  # what the camera's field shows of it
    return Phantom(np.clip(img + 0.01 * c.noise(0.7)[..., None], 0, 1), findings=found)


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


def draw_oct(c: Canvas, s: Scene) -> Phantom:
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
    found = [sub * 1.0] if s.finding == "cnv" else []  # the lifted, bright new-vessel band
    for cx_, rx, ry in cysts:
        cy_ = float(np.interp(cx_, xs, (bands["inl"][0] + bands["onl"][1]) / 2))
        found.append(c.ellipse(cx_, cy_, rx, ry))
        img = paint(img, found[-1], 0.03)
    cut = lower + cup * (floor + 0.15 - lower)  # vitreous fills the cup, walls slope inwards
    img = np.where(y < cut, 0.04, img)
    speckle = c.blur(rng.gamma(3.0, 1 / 3.0, (c.size, c.size)), 0.5, 1.0)
    img = img * speckle * rng.uniform(0.85, 1.05) + 0.03 * np.abs(c.noise(0.7))
    return Phantom(np.clip(img, 0, 1), findings=found)


# Stain palettes: background stroma, cytoplasm, nuclei, empty lumen.
STAINS = {
    "he": ((0.93, 0.62, 0.74), (0.96, 0.76, 0.84), (0.33, 0.18, 0.52), (0.98, 0.96, 0.97)),
    "ihc": ((0.87, 0.87, 0.91), (0.62, 0.4, 0.2), (0.36, 0.42, 0.68), (0.98, 0.98, 0.98)),
    "trichrome": ((0.35, 0.52, 0.86), (0.86, 0.32, 0.36), (0.2, 0.14, 0.24), (0.97, 0.97, 0.98)),
}


def draw_microscopy(c: Canvas, s: Scene) -> Phantom:
    rng = c.rng
    found = []
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
        if anemia:  # the pale, sparse red cells: spread over the whole smear
            found.append(cells)
        img = paint(img, centres, (0.93, 0.84, 0.82))
        count = rng.integers(7, 11) if s.finding == "leukemia" else rng.integers(0, 2)
        spots = [
            (rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8), rng.uniform(0.13, 0.17))
            for _ in range(count)
        ]
        blasts = c.blank()
        for px, py, rad in spots:
            c.ellipse(px, py, rad, out=blasts)
            if s.finding == "leukemia":  # each blast
                found.append(c.ellipse(px, py, rad))
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
        if s.finding == "carcinoma":  # the tissue's architecture: the whole field
            found.append(np.ones((c.size, c.size)))
    img = c.blur(img, 0.6) * rng.uniform(0.94, 1.04) + 0.015 * c.noise(0.8)[..., None]
    return Phantom(np.clip(img, 0, 1), findings=found)


RENDERERS = {
    "Dermoscopy": draw_dermoscopy,
    "Fundus Photography": draw_fundus,
    "OCT": draw_oct,
    "Microscopy": draw_microscopy,
}
