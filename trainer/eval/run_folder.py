"""The folder of one evaluation run: per-item results as JSON Lines, and the settings they came from.

`python -m trainer eval` appends one line per (item, mode) to `results.jsonl` after every batch
(flushed and synced), so an interrupted run loses at most the batch in flight; the next run reads
the file, skips the (id, mode) pairs already there and cuts off a torn last line. `run.json`
records the model, prompt set and settings; a later run with other ones is refused, so results
from two models or two prompt sets never mix in one file.

    done = read_done(folder)                 # {(id, mode), ...}
    rows = read_results(folder / RESULTS)     # list of dicts, torn lines left out
"""

import json
import os
from pathlib import Path

RESULTS, RUN = "results.jsonl", "run.json"
# A rerun must match these settings of run.json, else its results would be mixed with others.
MATCHED = ("model", "subfolder", "adapter", "max_new_tokens", "image_size", "prompts", "checks")
# What a run.json written before a setting existed meant by leaving it out.
UNRECORDED = {"prompts": "training", "checks": None}


class RunMismatch(Exception):
    """The folder holds results made with another model or settings; str(err) says which."""


def read_results(path) -> list[dict]:
    """The complete result lines of a JSON Lines file; a torn or unreadable line is left out."""
    path = Path(path)
    if not path.exists():
        return []
    results = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row and "mode" in row:
            results.append(row)
    return results


def read_done(folder: Path) -> set[tuple[str, str]]:
    """(id, mode) pairs already in results.jsonl; a torn last line is cut off the file first."""
    path = Path(folder) / RESULTS
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # an interrupted write: drop the partial line
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
    return {(row["id"], row["mode"]) for row in read_results(path)}


def _read_run(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def start_run(folder, run: dict, overwrite: bool = False) -> None:
    """Check `run` against the folder's run.json (refusing a mismatch), then record it.

    `overwrite` removes earlier results and settings first.
    """
    folder = Path(folder)
    path = folder / RUN
    if overwrite:
        (folder / RESULTS).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    before = _read_run(path) if path.exists() else {}
    if before and (folder / RESULTS).exists():
        then = {k: before.get(k, UNRECORDED.get(k)) for k in MATCHED}
        now = {k: run.get(k, UNRECORDED.get(k)) for k in MATCHED}
        changed = [k for k in MATCHED if then[k] != now[k]]
        if changed:
            listed = ", ".join(f"{k}: {then[k]!r} then, {now[k]!r} now" for k in changed)
            raise RunMismatch(
                f"{folder} holds results made with other settings ({listed}). "
                "Use another output folder, or --overwrite to start again."
            )
    update_run(folder, run)


def update_run(folder, fields: dict) -> None:
    """Add `fields` (e.g. what the engine loaded) to run.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN
    merged = {**(_read_run(path) if path.exists() else {}), **fields}
    path.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")


class ResultWriter:
    """Appends result lines, flushed and synced after every batch so an interruption loses little."""

    def __init__(self, folder):
        self.handle = open(Path(folder) / RESULTS, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, lines: list[dict]) -> None:
        self.handle.write("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
