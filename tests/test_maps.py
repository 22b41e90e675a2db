"""Pointing scores of relevance maps on phantoms (`trainer.eval.maps`, `trainer eval --maps`)."""

import json
from pathlib import Path

import numpy as np
import pytest

from trainer.eval import maps

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("shape", [(4, 4), (8, 8), (14, 14)])
def test_a_uniform_map_scores_the_chance_level(shape):
    rng = np.random.default_rng(sum(shape))
    mask = np.zeros((224, 224), dtype=bool)
    mask[30:90, 100:200] = True  # a box
    mask[150:170, 10:40] |= rng.random((20, 30)) < 0.5  # and some scattered spots
    uniform = np.full(shape, 1 / (shape[0] * shape[1]))
    found = maps.pointing(uniform, mask)
    assert found["pointing"] == pytest.approx(found["chance"])
    assert found["mass"] == pytest.approx(found["chance"])
    assert found["chance"] == pytest.approx(mask.mean(), abs=0.01)


def test_a_map_on_the_finding_points_at_it():
    mask = np.zeros((112, 112), dtype=bool)
    mask[:56, :56] = True  # the upper-left quadrant of a 4 x 4 map
    on = np.full((4, 4), 0.01)
    on[0, 1] = 0.85
    off = np.full((4, 4), 0.01)
    off[3, 3] = 0.85
    assert maps.pointing(on, mask)["pointing"] == 1.0
    assert maps.pointing(off, mask)["pointing"] == 0.0
    assert maps.pointing(on, mask)["mass"] > 0.85 > maps.pointing(off, mask)["mass"]
    assert maps.pointing(on, mask)["chance"] == pytest.approx(0.25)


def test_eval_maps_reports_the_bundled_policy_whatever_it_scores(tmp_path, capsys):
    from trainer.eval.evaluate import main
    from trainer.phantoms.synth import write_dataset

    write_dataset(tmp_path / "data", n=48, seed=11, image_size=112, progress=False)
    out = tmp_path / "eval"
    argv = ["--model", str(ROOT / "assets" / "demo-policy"), "--data",
            str(tmp_path / "data" / "test.json"), "--out", str(out), "--maps", "--quiet",
            "--max_new_tokens", "96"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "pointing" in printed and "chance" in printed
    summary = json.loads((out / "maps_summary.json").read_text())
    overall = {r["mode"]: r for r in summary["rows"] if r["grouping"] == "overall"}
    assert set(overall) == {"thinking", "no-thinking"}
    for row in overall.values():  # reported as measured: only its range is known in advance
        assert row["items"] > 0
        assert 0 <= row["pointing"] <= 1 and 0 <= row["mass"] <= 1 and 0 < row["chance"] <= 1
    lines = [json.loads(x) for x in (out / "maps.jsonl").read_text().splitlines()]
    assert all(str(tmp_path) not in json.dumps(x) for x in lines)  # ids, not server paths
    assert (out / "maps.png").stat().st_size > 5_000
    assert (out / "maps_summary.csv").read_text().startswith("grouping,group,mode,items")
