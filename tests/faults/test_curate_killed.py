"""The curation driver SIGKILLed between steps: re-running the same command re-uses every step
that finished (its ``DONE`` marker and settings key), recomputes the rest, and ends with the
same output sets as an uninterrupted run."""

from __future__ import annotations

import glob
import json
import os

import pyarrow.dataset as pads
import pytest
import yaml

from logics_rl.curate.planted import planted_rows

pytestmark = [pytest.mark.faults, pytest.mark.slow]  # about 100 s: make test-slow


@pytest.fixture(scope="module")
def curate_recipe(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("curate")
    data = d / "planted.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for row in planted_rows(1200, seed=11):
            fh.write(json.dumps(row) + "\n")
    recipe = {
        "mode": "curate",
        "curate": {
            "inputs": [{"path": str(data)}],
            "stages": ["annotate", "dedup", "stratify"],
            "workers": 1,
            "annotate": {"language": False},
        },
    }
    path = d / "curate.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def output_rows(run_dir: str) -> dict[str, list]:
    out = {}
    for name in ("rl", "sft"):
        t = pads.dataset(os.path.join(run_dir, "output", name), format="parquet").to_table()
        out[name] = sorted(json.dumps(r, sort_keys=True) for r in t.to_pylist())
    return out


def test_killed_between_steps_then_rerun_reuses_finished_steps_and_matches(
    curate_recipe, main_cmd, main_run, kill_run_after, tmp_path
):
    ref_dir = str(tmp_path / "reference")
    code, out, _ = main_run(curate_recipe, ref_dir)
    assert code == 0, out[-3000:]

    run_dir = str(tmp_path / "killed")
    marker = os.path.join(run_dir, "curate", "01-annotate-*", "DONE")
    kill_run_after(main_cmd(curate_recipe, run_dir), marker, "annotate")
    assert not glob.glob(os.path.join(run_dir, "curate", "02-dedup-*", "DONE"))

    code, out, _ = main_run(curate_recipe, run_dir)
    assert code == 0, out[-3000:]
    assert "curate load: 1200 -> 1200 rows (cached)" in out
    assert "curate annotate: 1200 -> 1200 rows (cached)" in out
    assert "curate dedup:" in out and "curate dedup: 1200 -> " in out
    dedup_line = next(line for line in out.splitlines() if line.startswith("curate dedup:"))
    assert "cached" not in dedup_line
    assert output_rows(run_dir) == output_rows(ref_dir)
    with (
        open(os.path.join(run_dir, "report.json")) as a,
        open(os.path.join(ref_dir, "report.json")) as b,
    ):
        got, want = json.load(a), json.load(b)
    assert [(s["name"], s["removed"]) for s in got["steps"]] == [
        (s["name"], s["removed"]) for s in want["steps"]
    ]
