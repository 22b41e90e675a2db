"""One phantom question item: the scene to draw, the question, its options, answer and rationale.

`compose(index, modality, question_type, answer, rng)` picks a variant of the question kind (see
`trainer.phantoms.kinds`), fills the scene fields the question does not fix (`DEFAULTS`), and
returns an `Item` whose option `answer` (canonical index) is correct; `Item.record` is its
Med-R1 split record. Planning whole datasets and writing files is `trainer.phantoms.synth`.

Try it: `python -c "import numpy as np; from trainer.phantoms.questions import compose;
print(compose(0, 'CT', 'Disease Diagnosis', 1, np.random.default_rng(0)))"`
"""

from dataclasses import dataclass

import numpy as np

from medr1_demo.protocol import LETTERS, format_question, make_solution
from trainer.phantoms import dicom_export
from trainer.phantoms.canvas import Scene
from trainer.phantoms.kinds import (
    KINDS,
    MODALITIES,
    MODALITY_EVIDENCE,
    MODALITY_QUESTIONS,
    MODALITY_RECOGNITION,
    PANELS,
    Kind,
)

SLUGS = dict(
    zip(MODALITIES, ("ct", "mri", "xray", "us", "derm", "fundus", "oct", "micro"), strict=True)
)
FOLDERS = {m: m.replace(" ", "_") for m in MODALITIES}

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

    def record(self, dicom: bool, regions: dict | None = None) -> dict:
        """The split-file record (Med-R1's image/problem/solution plus the fields behind them);
        `regions`: where the finding was drawn (`trainer.phantoms.regions`), when it has one."""
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
        if regions:
            rec["regions"] = regions
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
    if question_type == MODALITY_RECOGNITION:
        panel = PANELS[0] if modality in PANELS[0] else PANELS[1]
        labels, questions = panel, MODALITY_QUESTIONS
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
    if (
        shuffle_options and question_type == MODALITY_RECOGNITION
    ):  # distractors from all 8 modalities
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
