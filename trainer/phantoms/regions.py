"""Where each phantom's finding was drawn: boxes, area and a mask, in the records and beside the files.

Every drawer returns, with its pixels, one soft mask per drawn part of the scene's finding (a
lesion, each lung of a bilateral effusion, each fundus spot, each blast; `Phantom.findings`).
`describe` turns them into the `regions` field that `python -m trainer synth` adds to each record
with a finding (an extra field: Med-R1's loaders read only image, problem and solution):

    {"finding": "hemorrhage", "boxes": [[0.61, 0.42, 0.78, 0.6]], "area": 0.0248,
     "mask": "Images/CT/ct-000012.mask.png"}

`boxes` are [x0, y0, x1, y1] in fractions of the picture's width and height (0 the left or top
edge, 1 the right or bottom), one per part; `area` is the share of the picture inside the mask;
`mask` is the side file `<id>.mask.png` (255 inside, 0 outside, the picture's size), written next
to the PNG and DICOM with `<id>.regions.json` (this same dict). A part is inside where its mask
is at least one half. Diffuse findings cover much of the picture (anemia's red cells) or all of it
(carcinoma's architecture); their `area` says so, and pointing scores compare with it.

    found = regions.describe(phantom, "hemorrhage", "Images/CT/ct-000012.mask.png")
    regions.write_side_files(Path("out/Images/CT/ct-000012"), found, regions.union(phantom))
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

INSIDE = 0.5  # a pixel belongs to a part where its soft mask reaches this
MASK_SUFFIX, REGIONS_SUFFIX = ".mask.png", ".regions.json"


def union(phantom) -> np.ndarray | None:
    """The finding's mask (True inside any part) at the picture's size; None without one."""
    parts = [part >= INSIDE for part in phantom.findings]
    parts = [part for part in parts if part.any()]
    return np.logical_or.reduce(parts) if parts else None


def box(mask: np.ndarray) -> list[float]:
    """[x0, y0, x1, y1] of a boolean mask, in fractions of its width and height."""
    rows, columns = np.nonzero(mask)
    height, width = mask.shape
    return [
        round(columns.min() / width, 4),
        round(rows.min() / height, 4),
        round((columns.max() + 1) / width, 4),
        round((rows.max() + 1) / height, 4),
    ]


def describe(phantom, finding: str, mask_path: str | None = None) -> dict | None:
    """The `regions` field of an item whose scene shows `finding`; None when nothing was drawn."""
    whole = union(phantom)
    if not finding or whole is None:
        return None
    parts = [part >= INSIDE for part in phantom.findings]
    found = {
        "finding": finding,
        "boxes": [box(part) for part in parts if part.any()],
        "area": round(float(whole.mean()), 4),
    }
    if mask_path:
        found["mask"] = mask_path
    return found


def write_side_files(base: Path, found: dict, mask: np.ndarray) -> None:
    """`<base>.regions.json` and `<base>.mask.png` beside the item's PNG (and DICOM)."""
    Image.fromarray(mask.astype(np.uint8) * 255).save(
        base.with_name(base.name + MASK_SUFFIX), optimize=True
    )
    text = json.dumps(found, indent=1) + "\n"
    base.with_name(base.name + REGIONS_SUFFIX).write_text(text, encoding="utf-8")


def region_mask(found: dict, size: tuple[int, int], folder: Path | None = None) -> np.ndarray:
    """The finding's mask at `size` (width, height): its mask file when it exists (a relative path
    is taken from `folder`, the folder the record's paths are relative to), else its boxes."""
    width, height = size
    path = Path(folder or "") / found["mask"] if found.get("mask") else None
    if path is not None and path.is_file():
        with Image.open(path) as image:
            shown = image.convert("L").resize((width, height), Image.Resampling.NEAREST)
        return np.asarray(shown) >= 128
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in found.get("boxes", []):
        j0, j1 = int(np.floor(x0 * width)), int(np.ceil(x1 * width))
        i0, i1 = int(np.floor(y0 * height)), int(np.ceil(y1 * height))
        mask[i0:i1, j0:j1] = True
    return mask
