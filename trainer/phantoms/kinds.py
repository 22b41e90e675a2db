"""What the phantom data can ask: modalities, question types and every question kind's options.

`QUESTION_TABLE` is the catalogue, one block per (modality, question type) variant: the scene
field the question is about, the question wordings, and the options in their canonical order
with the evidence sentence that becomes each answer's rationale. `KINDS` is that table parsed
into `Kind`s; modality recognition, which every modality shares, uses `PANELS`, `MODALITY_QUESTIONS`
and `MODALITY_EVIDENCE` instead. `trainer.phantoms.questions.compose` turns a kind into one item.

Look at a kind: `python -c "from trainer.phantoms.kinds import KINDS;
print(KINDS[('CT', 'Disease Diagnosis')][0].labels)"`
"""

from dataclasses import dataclass, field

from medr1_demo import protocol
from trainer.phantoms.canvas import RADII

MODALITIES, QUESTION_TYPES = protocol.MODALITIES, protocol.QUESTION_TYPES
MODALITY_RECOGNITION, ANATOMY, DIAGNOSIS, GRADING, ATTRIBUTE = QUESTION_TYPES

# Fixed 4-option panels for modality recognition: each modality keeps its letter.
PANELS = (MODALITIES[:4], MODALITIES[4:])
MODALITY_QUESTIONS = (
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
