"""Procedural phantom scans for the 8 Med-R1 modalities: the drawing code behind `trainer.phantoms.synth`.

`render(scene, rng, size)` turns a `Scene` (what the picture must show: modality, anatomy, finding,
grade, side, attribute) into pixels. CT comes back in Hounsfield units with its display window;
every other modality as floats in [0, 1], grey (H, W) or colour (H, W, 3). Everything not fixed by
the scene (position, size jitter, contrast, noise, texture) is drawn from `rng`, so one rng seed
gives one picture.

The drawing lives in `trainer.phantoms.radiology` (CT, MRI, X-ray, ultrasound) and
`trainer.phantoms.optical` (dermoscopy, fundus, OCT, microscopy), on the shared `Canvas` of
`trainer.phantoms.canvas`; this module picks the drawer and keeps their names importable here.

Cues are deliberately large and high-contrast (lesions, silhouettes, colours, counts), because a
very small vision-language model is trained on these pictures at about 56-112 pixels: each answer
must survive that downsampling. Coordinates are normalised: x and y run from -1 to 1, left to right
and top to bottom. Sides are the patient's: on CT and X-ray the patient's left is the image right.

Try it: `python -c "import numpy as np; from trainer.phantoms.render import Scene, render;
print(render(Scene('CT', 'chest'), np.random.default_rng(0), 64).pixels.shape)"`
"""

import numpy as np

from trainer.phantoms import optical as optical_phantoms
from trainer.phantoms import radiology as radiology_phantoms
from trainer.phantoms.canvas import (
    RADII,
    Canvas,
    Phantom,
    Scene,
    lesion_radius,
    paint,
    place,
    side_signs,
)
from trainer.phantoms.optical import OCT_LAYERS, SKIN_TONES, STAINS
from trainer.phantoms.radiology import CT_PADDING_HU, CT_WINDOWS, DOPPLER_COLOURS, MRI_TISSUE

__all__ = [
    "CT_PADDING_HU",
    "CT_WINDOWS",
    "DOPPLER_COLOURS",
    "MRI_TISSUE",
    "OCT_LAYERS",
    "RADII",
    "RENDERERS",
    "SKIN_TONES",
    "STAINS",
    "Canvas",
    "Phantom",
    "Scene",
    "lesion_radius",
    "paint",
    "place",
    "render",
    "side_signs",
]

RENDERERS = {**radiology_phantoms.RENDERERS, **optical_phantoms.RENDERERS}


def render(scene: Scene, rng: np.random.Generator, size: int = 224, z: float = 0.0) -> Phantom:
    """Draw `scene` at `size` x `size`; `z` (CT only) moves the slice through the volume."""
    canvas = Canvas(size, rng)
    if scene.modality == "CT":
        return radiology_phantoms.draw_ct(canvas, scene, z)
    return RENDERERS[scene.modality](canvas, scene)
