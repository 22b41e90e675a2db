"""Many questions through one policy: shared by `python -m trainer eval` and the app's Batch tab.

sources.py   reading Med-R1 split files, OmniMedVQA QA files, JSON Lines and saved datasets
runner.py    items -> rows -> answers (continuous batching) -> scored result lines
scores.py    scoring one answer, summarising many (tables, CSV)
trust_scores.py  the trust aids over many answers: image reliance, order, calibration (ECE)
cases.py     a person's uploaded case list (JSON or CSV) and ZIP of images -> items
outputs.py   result lines as CSV and JSON, the summary's and the reliability diagram's PNGs
"""
