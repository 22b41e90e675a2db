"""Evaluation: Med-R1's accuracy tables and cross-generalisation matrices.

evaluate.py    `python -m trainer eval`: both modes, continuous batching, resumable
run_folder.py  an evaluation run's folder: results.jsonl and run.json
matrix.py      `python -m trainer matrix`: checkpoints x test splits heatmaps

Scoring, reading data files and the batch loop live in `medr1_demo.batch` (shared with the app's
Batch tab).
"""
