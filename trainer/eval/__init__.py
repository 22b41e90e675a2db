"""Evaluation: Med-R1's accuracy tables and cross-generalisation matrices.

evaluate.py    `python -m trainer eval`: both modes, continuous batching, resumable
scores.py      scoring one answer, summarising many (tables, CSV)
run_folder.py  an evaluation run's folder: results.jsonl and run.json
matrix.py      `python -m trainer matrix`: checkpoints x test splits heatmaps
"""
