"""Synthetic phantom VQA data in Med-R1's split format: `python -m trainer synth --out DIR --n N`.

Writes procedurally drawn scans of all 8 Med-R1 modalities (drawn by `trainer.phantoms`), each
asked one multiple-choice question of one of the 5 Med-R1 question types, with a short rationale
stating the visible evidence (for an SFT warm start):

    DIR/Images/<Modality>/<id>.png      8-bit grey or RGB
    DIR/Images/<Modality>/<id>.dcm      CT, MRI, X-Ray, Ultrasound (unless --no-dicom)
    DIR/train.json, DIR/test.json       records: image, problem, solution, rationale, ...
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from medr1_demo.protocol import LETTERS, format_question, make_solution
from trainer import dicom_export
from trainer.phantoms import RADII, Scene, render

GENERATOR_VERSION = "1"
MODALITIES = (
    "CT",
    "MRI",
    "X-Ray",
    "Ultrasound",
    "Dermoscopy",
    "Fundus Photography",
    "OCT",
    "Microscopy",
)
QUESTION_TYPES = (
    "Modality Recognition",
    "Anatomy Identification",
    "Disease Diagnosis",
    "Lesion Grading",
    "Other Biological Attributes",
)
MR, ANATOMY, DIAGNOSIS, GRADING, ATTRIBUTE = QUESTION_TYPES
SLUGS = dict(
    zip(MODALITIES, ("ct", "mri", "xray", "us", "derm", "fundus", "oct", "micro"), strict=True)
)
FOLDERS = {m: m.replace(" ", "_") for m in MODALITIES}
CT_FRAMES, GALLERY_CT_FRAMES, MULTIFRAME_EVERY, MONOCHROME1_EVERY = 8, 4, 20, 4

# Fixed 4-option panels for modality recognition: each modality keeps its letter.
PANELS = (MODALITIES[:4], MODALITIES[4:])
MR_QUESTIONS = (
    "What imaging modality was used to acquire this image?",
    "Which imaging technique produced this picture?",
    "What type of medical imaging is shown?",
)
MODALITY_EVIDENCE = {
    "CT": "A cross-sectional slice with a bright bone ring and the curved scanner table below: CT.",
    "MRI": "Soft tissues in many shades of grey, dark cortical bone and grainy background noise: MRI.",
    "X-Ray": "A projection with white bones and dark air-filled regions: an X-ray.",
    "Ultrasound": "A fan-shaped field of grainy speckle on black: ultrasound.",
    "Dermoscopy": "Magnified skin seen through a round dermatoscope field: dermoscopy.",
    "Fundus Photography": "An orange-red round view of the retina with its vessels: fundus photography.",
    "OCT": "Horizontal bright and dark bands of the retinal layers in cross-section: OCT.",
    "Microscopy": "Stained cells and tissue on a light background at high magnification: microscopy.",
}
# Scene fields not fixed by a question: a tuple means "draw one at random".
DEFAULTS = {
    "CT": {"anatomy": ("head", "chest", "abdomen"), "attribute": ("plain", "contrast")},
    "MRI": {"anatomy": ("brain", "knee", "spine"), "attribute": ("t1", "t2")},
    "X-Ray": {"anatomy": ("chest", "hand", "knee")},
    "Ultrasound": {"anatomy": ("liver", "kidney", "fetal head")},
    "Dermoscopy": {
        "anatomy": ("trunk", "acral", "nail"),
        "attribute": ("light", "intermediate", "dark"),
        "finding": "nevus",  # dermoscopy always looks at a lesion
    },
    "Fundus Photography": {
        "anatomy": ("disc", "macula", "periphery"),
        "attribute": ("left", "right"),
    },
    "OCT": {"anatomy": ("macula", "nerve head", "periphery")},
    "Microscopy": {"anatomy": ("blood", "colon", "muscle"), "attribute": "he"},
}
SIZE_LABELS = ("Small", "Medium", "Large")
DIAGNOSIS_QUESTIONS = (
    "What abnormality is seen in this image?",
    "What is the most likely diagnosis?",
    "Which finding does this image show?",
)
QUESTION_TABLE = """
# One block per question kind. "== modality | question type | scene field | fixed scene fields"
# (key=value; a/b draws one at random per item). "? text" is a question wording ("? *diagnosis"
# stands for the shared diagnosis wordings). "value | option | evidence" rows are the options in
# their canonical order ("-" is no finding; "{where}" becomes the patient's side).
# "*size NOUN" stands for small / medium / large rows whose evidence gives the lesion's width.

== CT | Anatomy Identification | anatomy |
? Which body region is shown in this CT image?
? What part of the body does this scan show?
head | Head | A round skull with a thick bright bone ring around the brain: the head.
chest | Chest | Two large black air-filled lungs either side of the heart: the chest.
abdomen | Abdomen | Liver, kidneys and spine, with no lungs: the abdomen.

== CT | Disease Diagnosis | finding | anatomy=head grade=1/2 side=left/right
? *diagnosis
- | No abnormality | The brain is even grey with no focal lesion: no abnormality.
hemorrhage | Intracranial hemorrhage | A bright round lesion in the brain on {where}: a hemorrhage.
infarct | Infarct | A dark (hypodense) area in the brain on {where}: an infarct.

== CT | Disease Diagnosis | finding | anatomy=chest grade=1/2 side=left/right/both
? *diagnosis
- | No abnormality | Both lungs are black and clear: no abnormality.
lung_mass | Lung mass | A round soft-tissue mass inside the lung on {where}: a lung mass.
effusion | Pleural effusion | Grey fluid in the back of the lung on {where}: pleural effusion.

== CT | Disease Diagnosis | finding | anatomy=abdomen grade=1/2 attribute=plain
? *diagnosis
- | No abnormality | The liver is evenly grey: no abnormality.
liver_mass | Liver mass | A round lesion brighter than the liver: a liver mass.
liver_cyst | Liver cyst | A round dark water-density lesion in the liver: a liver cyst.

== CT | Lesion Grading | grade | anatomy=head finding=hemorrhage
? How large is the hemorrhage?
? What is the size grade of the hemorrhage?
*size hemorrhage

== CT | Lesion Grading | grade | anatomy=chest finding=lung_mass
? How large is the lung mass?
? What is the size grade of the lung mass?
*size mass

== CT | Lesion Grading | grade | anatomy=abdomen finding=liver_mass attribute=plain
? How large is the liver mass?
? What is the size grade of the liver mass?
*size mass

== CT | Other Biological Attributes | attribute | anatomy=abdomen
? Was intravenous contrast given for this scan?
? Which contrast phase is this CT scan?
plain | Non-contrast | Kidneys and aorta are no brighter than muscle: no intravenous contrast.
contrast | Contrast-enhanced | Bright white kidneys and aorta: contrast-enhanced.

== MRI | Anatomy Identification | anatomy |
? Which anatomical structure is imaged in this MRI?
? What part of the body does this scan show?
brain | Brain | An oval head with grey and white matter around the ventricles: the brain.
knee | Knee | The femur above and the tibia below a joint space: the knee.
spine | Spine | A column of stacked vertebral bodies and discs: the spine.

== MRI | Disease Diagnosis | finding | anatomy=brain attribute=t1 grade=1/2 side=left/right
? *diagnosis
- | No abnormality | The brain shows no focal lesion: no abnormality.
tumor | Brain tumor | A bright enhancing mass in the brain on {where}: a brain tumor.
cyst | Cyst | A dark fluid-filled round lesion in the brain on {where}: a cyst.

== MRI | Lesion Grading | grade | anatomy=brain attribute=t1 finding=tumor
? How large is the tumor?
? What is the size grade of the tumor?
*size tumor

== MRI | Other Biological Attributes | attribute |
? Which MRI sequence is this image?
? What is the weighting of this MRI image?
t1 | T1-weighted | Fluid such as cerebrospinal fluid is dark and fat is bright: T1-weighted.
t2 | T2-weighted | Fluid such as cerebrospinal fluid is bright: T2-weighted.

== X-Ray | Anatomy Identification | anatomy |
? Which body part is shown in this radiograph?
? What part of the body does this X-ray show?
chest | Chest | Two dark lung fields around the white heart shadow: the chest.
hand | Hand | Finger bones, metacarpals and wrist bones: the hand.
knee | Knee | The femur and tibia meeting at a joint: the knee.

== X-Ray | Disease Diagnosis | finding | anatomy=chest side=left/right
? *diagnosis
- | No abnormality | Clear lungs and a normal-sized heart: no abnormality.
pneumonia | Pneumonia | A hazy white patch in the lung on {where}: pneumonia.
cardiomegaly | Cardiomegaly | The heart shadow is wider than half of the chest: cardiomegaly.

== X-Ray | Lesion Grading | grade | anatomy=chest finding=effusion side=left/right/both
? How large is the pleural effusion?
? What is the grade of the pleural effusion?
0 | Small | White fluid fills only the base of the lung: small.
1 | Moderate | White fluid reaches about halfway up the lung: moderate.
2 | Large | White fluid fills most of the lung: large.

== X-Ray | Other Biological Attributes | side | anatomy=chest finding=pneumonia
? On which side of the patient is the pneumonia?
? Which lung shows the opacity?
left | Left | A hazy opacity on the image right, which is the patient's left: left.
right | Right | A hazy opacity on the image left, which is the patient's right: right.
both | Both sides | Hazy opacities in both lungs: both sides.

== Ultrasound | Anatomy Identification | anatomy |
? Which organ is shown in this ultrasound image?
? What structure does this scan show?
liver | Liver | Even liver texture with vessels above the bright curved diaphragm: the liver.
kidney | Kidney | A bean-shaped organ with a bright central sinus: the kidney.
fetal head | Fetal head | A bright oval skull with a midline echo in dark fluid: a fetal head.

== Ultrasound | Disease Diagnosis | finding | anatomy=liver grade=1/2
? *diagnosis
- | No abnormality | Even liver texture with only vessels: no abnormality.
cyst | Liver cyst | A round black lesion with brighter tissue behind it: a liver cyst.
hemangioma | Hemangioma | A round bright (hyperechoic) lesion in the liver: a hemangioma.

== Ultrasound | Lesion Grading | grade | anatomy=liver finding=cyst
? How large is the cyst?
? What is the size grade of the cyst?
*size cyst

== Ultrasound | Other Biological Attributes | attribute | anatomy=liver
? What does the colour Doppler show in the vessel?
? Which way is blood flowing in the vessel?
none | No flow | The vessel inside the colour box stays black: no flow.
toward | Flow towards the probe | The vessel in the colour box is red: flow towards the probe.
away | Flow away from the probe | The vessel in the colour box is blue: flow away from the probe.

== Dermoscopy | Anatomy Identification | anatomy | finding=-/nevus grade=0
? Which body site does this dermoscopic image show?
? Where on the body was this image taken?
trunk | Trunk | Plain skin without ridges: the trunk.
acral | Palm or sole | Parallel ridges and furrows of thick skin: a palm or sole.
nail | Nail | A smooth pink nail plate with a pale lunula: a nail.

== Dermoscopy | Disease Diagnosis | finding | anatomy=trunk grade=0/1 attribute=light/intermediate
? *diagnosis
nevus | Benign nevus | A symmetric, evenly brown lesion with a regular network: a benign nevus.
melanoma | Melanoma | A large asymmetric lesion with black and blue-grey areas: melanoma.
bcc | Basal cell carcinoma | A pink lesion with red branching vessels: basal cell carcinoma.

== Dermoscopy | Lesion Grading | grade | anatomy=trunk finding=nevus attribute=light/intermediate
? What is the diameter of the lesion?
? How large is the pigmented lesion?
0 | Small (under 6 mm) | The lesion is about 4 mm across in a 20 mm field: small.
1 | Medium (6-12 mm) | The lesion is about 8 mm across in a 20 mm field: medium.
2 | Large (over 12 mm) | The lesion is about 14 mm across in a 20 mm field: large.

== Dermoscopy | Other Biological Attributes | attribute | anatomy=trunk finding=-/nevus grade=0
? What is the patient's skin type?
? Which skin phototype is shown?
light | Light (Fitzpatrick I-II) | Pale pink-beige skin: a light skin type.
intermediate | Intermediate (Fitzpatrick III-IV) | Tan skin: an intermediate skin type.
dark | Dark (Fitzpatrick V-VI) | Deep brown skin: a dark skin type.

== Fundus Photography | Anatomy Identification | anatomy |
? Which structure is at the centre of this fundus photograph?
? What is this fundus image centred on?
disc | Optic disc | The bright yellow optic disc sits in the centre: the optic disc.
macula | Macula | The dark macula is central, the bright disc to one side: the macula.
periphery | Peripheral retina | Only vessels, with no disc or macula: the peripheral retina.

== Fundus Photography | Disease Diagnosis | finding | anatomy=macula grade=1/2
? *diagnosis
- | No abnormality | A clear retina with normal vessels: no abnormality.
dr | Diabetic retinopathy | Dark red haemorrhages and yellow exudates: diabetic retinopathy.
amd | Age-related macular degeneration | Yellow drusen on the macula: macular degeneration.

== Fundus Photography | Lesion Grading | grade | anatomy=macula finding=dr
? What is the severity of the diabetic retinopathy?
? How severe is the retinopathy?
0 | Mild | Only a few haemorrhages: mild.
1 | Moderate | Many haemorrhages and exudates: moderate.
2 | Severe | Haemorrhages everywhere, exudates and cotton-wool spots: severe.

== Fundus Photography | Other Biological Attributes | attribute | anatomy=macula
? Which eye is shown in this fundus photograph?
? Is this a left or a right eye?
left | Left eye | The optic disc lies on the image left, nasal to the macula: the left eye.
right | Right eye | The optic disc lies on the image right, nasal to the macula: the right eye.

== OCT | Anatomy Identification | anatomy |
? Which region of the retina does this OCT scan show?
? Where was this OCT B-scan taken?
macula | Macula (fovea) | A central pit where the inner layers thin out: the fovea.
nerve head | Optic nerve head | A deep cup where the retinal layers end: the optic nerve head.
periphery | Peripheral retina | Flat, even layers with no pit or cup: the peripheral retina.

== OCT | Disease Diagnosis | finding | anatomy=macula
? *diagnosis
- | Normal retina | Regular layers around a normal foveal pit: a normal retina.
cnv | Choroidal neovascularization | A bright dome lifting the retina: choroidal neovascularization.
dme | Diabetic macular edema | A thick retina holding dark fluid cysts: diabetic macular edema.

== OCT | Lesion Grading | grade | anatomy=macula finding=fluid
? How large is the intraretinal fluid cyst?
? What is the size of the fluid pocket?
0 | Small | A thin dark fluid pocket in the retina: small.
1 | Medium | A dark fluid pocket that bulges the retina: medium.
2 | Large | A wide dark fluid pocket that lifts the retina: large.

== OCT | Other Biological Attributes | attribute | anatomy=macula
? Which eye was scanned in this wide OCT B-scan?
? Is this OCT scan of a left or a right eye?
left | Left eye | The optic nerve cup lies on the image left, nasal to the fovea: the left eye.
right | Right eye | The optic nerve cup lies on the image right, nasal to the fovea: the right eye.

== Microscopy | Anatomy Identification | anatomy |
? What kind of specimen is shown?
? Which tissue is shown in this micrograph?
blood | Blood smear | Separate round red cells with pale centres: a blood smear.
colon | Colon tissue | Round glands with white lumens lined by nuclei: colon tissue.
muscle | Skeletal muscle | Long parallel fibres with nuclei at their edges: skeletal muscle.

== Microscopy | Disease Diagnosis | finding | anatomy=blood
? *diagnosis
- | Normal | Densely packed red cells and at most one white cell: normal blood.
leukemia | Leukemia | Many large purple blast cells among the red cells: leukemia.
anemia | Anemia | Few, pale red cells with wide pale centres: anemia.

== Microscopy | Lesion Grading | grade | anatomy=colon finding=carcinoma
? What is the histological grade of this colon carcinoma?
? How differentiated is this tumour?
0 | Well differentiated | Several well-formed round glands: well differentiated.
1 | Moderately differentiated | Few distorted glands, crowded nuclei: moderately differentiated.
2 | Poorly differentiated | Sheets of crowded nuclei with no glands: poorly differentiated.

== Microscopy | Other Biological Attributes | attribute | anatomy=colon
? Which stain was used on this section?
? What staining method is shown?
he | H&E | Pink stroma with purple nuclei: H&E.
ihc | Immunohistochemistry (DAB) | Brown epithelium on a pale blue-grey background: IHC.
trichrome | Masson trichrome | Blue collagen with red cytoplasm: Masson trichrome.
"""


@dataclass(frozen=True)
class Kind:
    """One question kind: answer i sets the scene's `field` to values[i], shown as labels[i]."""

    field: str
    values: tuple
    labels: tuple[str, ...]
    questions: tuple[str, ...]
    evidence: tuple[str, ...]  # per answer; "{where}" becomes the patient's side
    fixed: dict = field(default_factory=dict)  # other scene fields; a tuple = draw one


def _cell(name: str, text: str):
    value = "" if text == "-" else text
    return int(value) if name == "grade" else value


def parse_kinds(table: str) -> dict[tuple[str, str], tuple[Kind, ...]]:
    """QUESTION_TABLE -> {(modality, question type): the kind's variants}."""
    blocks: dict[tuple[str, str], list[dict]] = {}
    block: dict = {}
    for raw in table.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("== "):
            modality, question_type, name, fixed = (part.strip() for part in line[3:].split("|"))
            pairs = (pair.split("=") for pair in fixed.split())
            fixed_fields = {
                key: tuple(_cell(key, v) for v in value.split("/"))
                if "/" in value
                else _cell(key, value)
                for key, value in pairs
            }
            block = {"field": name, "fixed": fixed_fields, "questions": [], "rows": []}
            blocks.setdefault((modality, question_type), []).append(block)
        elif line.startswith("? "):
            text = line[2:]
            block["questions"] += DIAGNOSIS_QUESTIONS if text == "*diagnosis" else (text,)
        elif line.startswith("*size "):
            noun = line[len("*size ") :]
            for grade, (radius, label) in enumerate(zip(RADII, SIZE_LABELS, strict=True)):
                width = f"about {round(100 * radius)}% of the image width"
                block["rows"].append((grade, label, f"The {noun} spans {width}: {label.lower()}."))
        else:
            value, label, evidence = (part.strip() for part in line.split("|"))
            block["rows"].append((_cell(block["field"], value), label, evidence))
    kinds = {}
    for key, variants in blocks.items():
        built = []
        for b in variants:
            values, labels, evidence = (tuple(column) for column in zip(*b["rows"], strict=True))
            built.append(
                Kind(b["field"], values, labels, tuple(b["questions"]), evidence, b["fixed"])
            )
        kinds[key] = tuple(built)
    return kinds


KINDS = parse_kinds(QUESTION_TABLE)


@dataclass(frozen=True)
class Item:
    """One planned record: the scene to draw and the question asked about it."""

    index: int
    id: str
    modality: str
    question_type: str
    scene: Scene
    question: str
    options: tuple[str, ...]
    answer: str  # letter
    rationale: str

    def record(self, dicom: bool) -> dict:
        """The split-file record (Med-R1's image/problem/solution plus the fields behind them)."""
        folder = f"Images/{FOLDERS[self.modality]}/{self.id}"
        rec = {
            "id": self.id,
            "image": f"{folder}.png",
            "problem": format_question(self.question, list(self.options)),
            "solution": make_solution(self.answer),
            "modality": self.modality,
            "question_type": self.question_type,
            "rationale": self.rationale,
        }
        if dicom and self.modality in dicom_export.DICOM_MODALITIES:
            rec["dicom"] = f"{folder}.dcm"
        rec.update(question=self.question, options=list(self.options), answer=self.answer)
        return rec


def where_phrase(side: str) -> str:
    """The patient's side in words, with where it appears on a radiological image."""
    return {
        "left": "the patient's left (image right)",
        "right": "the patient's right (image left)",
        "both": "both sides",
    }[side]


def _choose(rng: np.random.Generator, value):
    return value[rng.integers(len(value))] if isinstance(value, tuple) else value


def _option_count(rng: np.random.Generator, available: int) -> int:
    """2 to 4 options (at most `available`), longer lists likelier so no letter takes over ~40%."""
    sizes = np.arange(2, min(available, 4) + 1)
    return int(rng.choice(sizes, p=(sizes - 1) / (sizes - 1).sum()))


def compose(
    index: int,
    modality: str,
    question_type: str,
    answer: int,
    rng: np.random.Generator,
    shuffle_options: bool = False,
) -> Item:
    """Build the item whose correct option is `answer` (canonical index) for one kind."""
    fields = {
        "anatomy": "",
        "finding": "",
        "grade": int(rng.integers(3)),
        "side": _choose(rng, ("left", "right")),
        "attribute": "",
    }
    fields.update({key: _choose(rng, value) for key, value in DEFAULTS[modality].items()})
    if question_type == MR:
        panel = PANELS[0] if modality in PANELS[0] else PANELS[1]
        labels, questions = panel, MR_QUESTIONS
        answer, evidence = panel.index(modality), ""
    else:
        variants = KINDS[(modality, question_type)]
        kind: Kind = variants[rng.integers(len(variants))]
        fields.update({key: _choose(rng, value) for key, value in kind.fixed.items()})
        fields[kind.field] = kind.values[answer]
        labels, questions = kind.labels, kind.questions
        evidence = kind.evidence[answer].format(where=where_phrase(fields["side"]))
    scene = Scene(modality, **fields)
    question = questions[rng.integers(len(questions))]
    if shuffle_options and question_type == MR:  # distractors from all 8 modalities
        others = [m for m in MODALITIES if m != modality]
        rng.shuffle(others)
        options = tuple(rng.permutation([modality, *others[: _option_count(rng, 4) - 1]]).tolist())
        letter = LETTERS[options.index(modality)]
    else:
        order = list(range(len(labels)))
        if shuffle_options:
            pool = [i for i in order if i != answer]
            rng.shuffle(pool)
            order = [answer, *pool[: _option_count(rng, len(labels)) - 1]]
            rng.shuffle(order)
        options = tuple(labels[i] for i in order)
        letter = LETTERS[order.index(answer)]
    rationale = " ".join(part for part in (MODALITY_EVIDENCE[modality], evidence) if part)
    item_id = f"{SLUGS[modality]}-{index:06d}"
    return Item(
        index, item_id, modality, question_type, scene, question, options, letter, rationale
    )


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
        if question_type == MR:
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
) -> None:
    """Write the PNG (and DICOM) of one item under root/Images/<Modality>/.

    `frames` > 1 writes a CT as a multi-frame volume whose middle frame (index frames // 2) is the
    PNG's slice; `monochrome1` stores an X-ray inverted; `compress_level` trades PNG size for speed.
    """
    phantom = draw(item, seed, size)
    stored = dicom_export.stored_values(item.modality, phantom.pixels)
    png = dicom_export.display_values(item.modality, stored, phantom.window)
    base = root / "Images" / FOLDERS[item.modality] / item.id
    Image.fromarray(png).save(base.with_suffix(".png"), compress_level=compress_level)
    if not dicom or item.modality not in dicom_export.DICOM_MODALITIES:
        return
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
    for item in tqdm(items, desc="synth", unit="item", disable=not progress):
        nth = item.index // len(MODALITIES)  # the item's rank within its modality
        multiframe = item.modality == "CT" and nth % MULTIFRAME_EVERY == 0
        monochrome1 = item.modality == "X-Ray" and nth % MONOCHROME1_EVERY == 0
        frames = CT_FRAMES if multiframe else 1
        write_item(root, item, seed, image_size, dicom, frames=frames, monochrome1=monochrome1)
    train, test = split(items, seed, test_fraction)
    for name, part in (("train", train), ("test", test)):
        records = [it.record(dicom) for it in part]
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
        "generator": "trainer.synth",
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
    others = (ANATOMY, GRADING, ATTRIBUTE, MR)
    entries = []
    for j, modality in enumerate(MODALITIES):
        (root / "Images" / FOLDERS[modality]).mkdir(parents=True, exist_ok=True)
        for t in range(per_modality):
            question_type = DIAGNOSIS if t == 0 else others[(j + t - 1) % len(others)]
            if question_type == MR:
                answer = 0
            else:
                size = len(KINDS[(modality, question_type)][0].values)
                answer = 1 + (j % 2) if question_type == DIAGNOSIS else (j + t) % size
            item = compose(j * per_modality + t, modality, question_type, answer, rng)
            # A 4-frame volume and maximum PNG compression keep the gallery under 2 MB.
            frames = GALLERY_CT_FRAMES if modality == "CT" and t == 0 else 1
            mono1 = modality == "X-Ray" and t == 0
            write_item(root, item, seed, image_size, True, frames, mono1, compress_level=9)
            rec = item.record(dicom=True)
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
        ours = json.loads(manifest.read_text()).get("generator") == "trainer.synth"
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
