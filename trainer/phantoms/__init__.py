"""The synthetic phantom benchmark: 8 Med-R1 modalities x 5 question types, drawn procedurally.

synth.py         `python -m trainer synth`: plans a run, writes splits, PNG and DICOM files
kinds.py         what can be asked: question kinds, options and evidence sentences
questions.py     one item: scene, question, options, answer, rationale
render.py        a scene -> pixels (picks the drawer)
canvas.py        the shared drawing canvas and scene type
radiology.py     CT, MRI, X-ray and ultrasound drawers
optical.py       dermoscopy, fundus, OCT and microscopy drawers
dicom_export.py  phantom pixels as DICOM files (synthetic identifiers only)
"""
