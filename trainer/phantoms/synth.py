"""Synthetic phantom VQA data in Med-R1's split format: `python -m trainer synth --out DIR --n N`.

Writes procedurally drawn scans of all 8 Med-R1 modalities (drawn by `trainer.phantoms.render`), each
asked one multiple-choice question of one of the 5 Med-R1 question types, with a short rationale
stating the visible evidence (for an SFT warm start). The questions, options and rationales are
catalogued in `trainer.phantoms.kinds` and put together in `trainer.phantoms.questions`; this module
plans a run, writes its files and holds the command line:

    DIR/Images/<Modality>/<id>.png      8-bit grey or RGB
    DIR/Images/<Modality>/<id>.dcm      CT, MRI, X-Ray, Ultrasound (unless --no-dicom)
    DIR/Images/<Modality>/<id>.regions.json, <id>.mask.png   where the finding was drawn (items
                                        with a finding; `trainer.phantoms.regions`)
    DIR/train.json, DIR/test.json       records: image, problem, solution, rationale, regions, ...
    DIR/Splits/modality/{train,test}/<Modality>_{train,test}.json
    DIR/Splits/question_type/{train,test}/<Question Type>_{train,test}.json
    DIR/manifest.json                   seed, n, counts per modality x question type, version

Options are listed in a canonical order per question kind ON PURPOSE: the bundled demo policy is a
tiny model, and a fixed order makes the answer letter a learnable function of image and question.
`--shuffle_options` draws a random subset of 2 to 4 options in random order instead (harder data).
Answers are balanced: each kind deals its answers from shuffled decks, so a k-option kind gives
each letter about 1/k of its items (2-option kinds split 50/50).

Same seed and arguments -> byte-identical JSON, PNG and DICOM files. Every 20th CT item (the first
included) is written as an 8-frame Enhanced CT, every 4th X-ray as a MONOCHROME1 CR.
`write_examples` writes the small gallery the app shows (`assets/examples/`).

    python -m trainer synth --out data/phantoms --n 2000 --seed 0
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from trainer.phantoms import dicom_export, regions
from trainer.phantoms.kinds import (
    ANATOMY,
    ATTRIBUTE,
    DIAGNOSIS,
    GRADING,
    KINDS,
    MODALITIES,
    MODALITY_RECOGNITION,
    QUESTION_TYPES,
)
from trainer.phantoms.questions import FOLDERS, Item, compose
from trainer.phantoms.render import render

GENERATOR_VERSION = "1"
# The generator as manifests name it: the command `python -m trainer synth` (unchanged since v1).
GENERATOR = "trainer.synth"
CT_FRAMES, GALLERY_CT_FRAMES, MULTIFRAME_EVERY, MONOCHROME1_EVERY = 8, 4, 20, 4


def plan(n: int, seed: int, shuffle_options: bool = False) -> list[Item]:
    """The n items of a run, without drawing them: modality and question type cycle evenly,
    answers come from per-kind shuffled decks so every option is the answer equally often."""
    rng = np.random.default_rng([seed, 0])
    decks: dict[tuple[str, str], list[int]] = {}
    items = []
    for index in range(n):
        modality = MODALITIES[index % len(MODALITIES)]
        question_type = QUESTION_TYPES[(index // len(MODALITIES)) % len(QUESTION_TYPES)]
        key = (modality, question_type)
        if question_type == MODALITY_RECOGNITION:
            answer = 0  # fixed by the modality
        else:
            if not decks.get(key):
                decks[key] = rng.permutation(len(KINDS[key][0].values)).tolist()
            answer = decks[key].pop()
        items.append(compose(index, modality, question_type, answer, rng, shuffle_options))
    return items


def split(items: list[Item], seed: int, test_fraction: float) -> tuple[list[Item], list[Item]]:
    """Hold out about `test_fraction` of every (modality, question type) group, chosen at random."""
    rng = np.random.default_rng([seed, 1])
    test_ids = set()
    for modality in MODALITIES:
        for question_type in QUESTION_TYPES:
            group = [
                it.index
                for it in items
                if it.modality == modality and it.question_type == question_type
            ]
            count = int(np.floor(len(group) * test_fraction + rng.random()))
            test_ids.update(rng.permutation(group)[:count].tolist())
    train = [it for it in items if it.index not in test_ids]
    return train, [it for it in items if it.index in test_ids]


BODY_PARTS = {
    "head": "HEAD",
    "chest": "CHEST",
    "abdomen": "ABDOMEN",
    "brain": "BRAIN",
    "knee": "KNEE",
    "spine": "LSPINE",
    "hand": "HAND",
    "liver": "ABDOMEN",
    "kidney": "KIDNEY",
    "fetal head": "UTERUS",
}
MR_TIMING = {"t1": (500.0, 15.0), "t2": (4000.0, 100.0)}  # repetition and echo time, ms


def draw(item: Item, seed: int, size: int, z: float = 0.0):
    """Render one item; the same (seed, item) always gives the same picture."""
    return render(item.scene, np.random.default_rng([seed, item.index, 2]), size, z)


def write_item(
    root: Path,
    item: Item,
    seed: int,
    size: int,
    dicom: bool,
    frames: int = 1,
    monochrome1: bool = False,
    compress_level: int = 1,
) -> dict | None:
    """Write the PNG (and DICOM) of one item under root/Images/<Modality>/; its `regions` field.

    `frames` > 1 writes a CT as a multi-frame volume whose middle frame (index frames // 2) is the
    PNG's slice; `monochrome1` stores an X-ray inverted; `compress_level` trades PNG size for speed.
    An item with a finding also gets its side files (`trainer.phantoms.regions`), drawn on the
    PNG's picture (the DICOM's middle frame).
    """
    phantom = draw(item, seed, size)
    stored = dicom_export.stored_values(item.modality, phantom.pixels)
    png = dicom_export.display_values(item.modality, stored, phantom.window)
    base = root / "Images" / FOLDERS[item.modality] / item.id
    Image.fromarray(png).save(base.with_suffix(".png"), compress_level=compress_level)
    mask_path = f"Images/{FOLDERS[item.modality]}/{item.id}{regions.MASK_SUFFIX}"
    found = regions.describe(phantom, item.scene.finding, mask_path)
    if found is not None:
        regions.write_side_files(base, found, regions.union(phantom))
    if not dicom or item.modality not in dicom_export.DICOM_MODALITIES:
        return found
    pixels = phantom.pixels
    if frames > 1 and item.modality == "CT":
        offsets = range(-(frames // 2), frames - frames // 2)
        pixels = np.stack([draw(item, seed, size, z).pixels if z else pixels for z in offsets])
    scene = item.scene
    extra = {}
    if item.modality == "MRI":
        repetition, echo = MR_TIMING[scene.attribute]
        extra = {
            "ScanningSequence": "SE",
            "SequenceVariant": "NONE",
            "MRAcquisitionType": "2D",
            "RepetitionTime": repetition,
            "EchoTime": echo,
            "MagneticFieldStrength": 1.5,
        }
    dicom_export.write_dicom(
        base.with_suffix(".dcm"),
        item.modality,
        pixels,
        uid_key=[str(seed), item.id],
        body_part=BODY_PARTS.get(scene.anatomy, ""),
        window=phantom.window,
        monochrome1=monochrome1,
        description=f"Phantom {scene.anatomy}",
        extra=extra,
    )
    return found


def _dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def write_dataset(
    out: str | Path,
    n: int,
    seed: int = 0,
    test_fraction: float = 0.2,
    image_size: int = 224,
    dicom: bool = True,
    shuffle_options: bool = False,
    progress: bool = True,
) -> dict:
    """Generate a whole dataset under `out` (see the module docstring); returns the manifest."""
    root = Path(out)
    items = plan(n, seed, shuffle_options)
    for modality in MODALITIES:
        (root / "Images" / FOLDERS[modality]).mkdir(parents=True, exist_ok=True)
    drawn = {}  # item index -> its regions field (items with a finding)
    for item in tqdm(items, desc="synth", unit="item", disable=not progress):
        nth = item.index // len(MODALITIES)  # the item's rank within its modality
        multiframe = item.modality == "CT" and nth % MULTIFRAME_EVERY == 0
        monochrome1 = item.modality == "X-Ray" and nth % MONOCHROME1_EVERY == 0
        frames = CT_FRAMES if multiframe else 1
        found = write_item(root, item, seed, image_size, dicom, frames, monochrome1)
        if found is not None:
            drawn[item.index] = found
    train, test = split(items, seed, test_fraction)
    for name, part in (("train", train), ("test", test)):
        records = [it.record(dicom, drawn.get(it.index)) for it in part]
        _dump(root / f"{name}.json", records)
        for key, values in (("modality", MODALITIES), ("question_type", QUESTION_TYPES)):
            for value in values:
                chosen = [rec for rec in records if rec[key] == value]
                _dump(root / "Splits" / key / name / f"{value}_{name}.json", chosen)
    counts = {
        m: {
            q: sum(1 for it in items if it.modality == m and it.question_type == q)
            for q in QUESTION_TYPES
        }
        for m in MODALITIES
    }
    manifest = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "image_size": image_size,
        "test_fraction": test_fraction,
        "shuffle_options": shuffle_options,
        "dicom": dicom,
        "splits": {"train": len(train), "test": len(test)},
        "counts": counts,
    }
    _dump(root / "manifest.json", manifest)
    return manifest


def write_examples(
    out_dir: str | Path, per_modality: int = 2, seed: int = 0, image_size: int = 224
) -> list[dict]:
    """A small gallery for the app: `per_modality` scans per modality plus `examples.json`.

    Each entry: file (the DICOM for CT/MRI/X-Ray/Ultrasound, else the PNG), png, question,
    options, answer, modality, question_type, rationale. The first of each modality asks for a
    diagnosis; the first X-ray is stored MONOCHROME1 and the first CT as a 4-frame volume.
    """
    root = Path(out_dir)
    rng = np.random.default_rng([seed, 3])
    others = (ANATOMY, GRADING, ATTRIBUTE, MODALITY_RECOGNITION)
    entries = []
    for j, modality in enumerate(MODALITIES):
        (root / "Images" / FOLDERS[modality]).mkdir(parents=True, exist_ok=True)
        for t in range(per_modality):
            question_type = DIAGNOSIS if t == 0 else others[(j + t - 1) % len(others)]
            if question_type == MODALITY_RECOGNITION:
                answer = 0
            else:
                size = len(KINDS[(modality, question_type)][0].values)
                answer = 1 + (j % 2) if question_type == DIAGNOSIS else (j + t) % size
            item = compose(j * per_modality + t, modality, question_type, answer, rng)
            # A 4-frame volume and maximum PNG compression keep the gallery under 2 MB.
            frames = GALLERY_CT_FRAMES if modality == "CT" and t == 0 else 1
            mono1 = modality == "X-Ray" and t == 0
            found = write_item(root, item, seed, image_size, True, frames, mono1, compress_level=9)
            rec = item.record(dicom=True, regions=found)
            entries.append(
                {
                    "file": rec.get("dicom", rec["image"]),
                    "png": rec["image"],
                    "question": item.question,
                    "options": list(item.options),
                    "answer": item.answer,
                    "modality": modality,
                    "question_type": question_type,
                    "rationale": item.rationale,
                    **({"regions": found} if found else {}),
                }
            )
    _dump(root / "examples.json", entries)
    return entries


class UsageError(Exception):
    """Bad command-line input; str(err) is the sentence shown to the person."""


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder.")
    if not out.exists() or not any(out.iterdir()):
        return
    manifest = out / "manifest.json"
    try:
        ours = json.loads(manifest.read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):  # absent, unreadable or not our manifest
        ours = False
    if not overwrite or not ours:
        hint = "pass --overwrite to replace it" if ours else "choose an empty or new folder"
        raise UsageError(f"{out} is not empty; {hint}.")
    for name in ("Images", "Splits"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("train.json", "test.json", "manifest.json"):
        (out / name).unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer synth", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, help="output folder (new or empty)")
    parser.add_argument("--n", type=int, default=1000, help="number of items (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")
    parser.add_argument(
        "--test_fraction",
        type=float,
        default=0.2,
        help="share held out for test.json (default 0.2)",
    )
    parser.add_argument(
        "--image_size", type=int, default=224, help="square side in pixels (32-1024)"
    )
    parser.add_argument(
        "--dicom",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write DICOM for CT, MRI, X-Ray and Ultrasound (default on)",
    )
    parser.add_argument(
        "--shuffle_options", action="store_true", help="random 2-4 option subsets, random order"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier synth output in --out"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:  # argument checks: a plain sentence and exit code 2, no traceback
        if args.n < 1:
            raise UsageError("--n must be at least 1.")
        if not 0 <= args.test_fraction < 1:
            raise UsageError("--test_fraction must be at least 0 and below 1.")
        if not 32 <= args.image_size <= 1024:
            raise UsageError("--image_size must be between 32 and 1024 pixels.")
        if args.seed < 0:
            raise UsageError("--seed must be 0 or a positive whole number.")
        out = Path(args.out)
        _prepare(out, args.overwrite)
    except UsageError as err:
        print(f"synth: {err}", file=sys.stderr)
        return 2
    try:
        manifest = write_dataset(
            out,
            args.n,
            args.seed,
            args.test_fraction,
            args.image_size,
            args.dicom,
            args.shuffle_options,
            progress=not args.quiet,
        )
    except OSError as err:  # a full disk, a read-only folder: say so without a traceback
        print(f"synth: cannot write to {out}: {err.strerror or err}.", file=sys.stderr)
        return 2
    splits = manifest["splits"]
    print(f"wrote {splits['train']} train and {splits['test']} test items to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
