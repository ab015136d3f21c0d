"""How an RL step's cost grows with the work: response length, group size, train ranks.

    python benchmarks/bench_scale.py [--points all|len|group|ranks] [--only LABELS] [--prompts 2]
                                     [--steps 2]

Each point is a short real run of ``recipes/smollm2_arith_cpu.yaml`` through
``python -m logics_rl.main`` (Ray, vLLM CPU, FSDP2) with ``rollout.sampling.ignore_eos=true``, so
every sample is exactly ``rollout.max_response_length`` tokens long and the work is what the
point says, whatever the model writes. No validation, no filters, one generation round per step.
Reported per point: the last step's wall time (``time/step``; the steps before it are warm-up)
and its phases, tokens generated and trained, and the peak memory of the process tree (sum of
PSS, sampled every second: driver, Ray, workers; shared pages counted once) and of the busiest
worker
(``memory/worker_peak_rss_gb_max``).

Points: response length 96 / 256 / 512 / 1024 at group size 4; group size 4 / 8 / 16 at length
96; 1 vs 2 train ranks (one CPU each, vs one rank with both) at length 256, group 4.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from bench_overhead import COMMON as SHORT_RUN
from common import machine, today
from compare_trl import RECIPE, run_logged

HERE = Path(__file__).resolve().parent


def points(which: str) -> list[tuple[str, int, int, int]]:
    """(label, response length, group size, ranks)."""
    out = []
    if which in ("all", "len"):
        out += [(f"len {n}", n, 4, 1) for n in (96, 256, 512, 1024)]
    if which in ("all", "group"):
        out += [(f"group {g}", 96, g, 1) for g in (8, 16)]
        if which == "group":
            out.insert(0, ("group 4", 96, 4, 1))
    if which in ("all", "ranks"):
        out += [("2 ranks", 256, 4, 2)]
        if which == "ranks":
            out.insert(0, ("1 rank", 256, 4, 1))
    return out


def run_point(a, label: str, length: int, group: int, ranks: int, workdir: Path) -> dict:
    run_dir = workdir / label.replace(" ", "_")
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "logics_rl.main", "--config", str(RECIPE)]
    cmd += [
        f"trainer.run_dir={run_dir}",
        f"trainer.total_steps={a.steps}",
        f"trainer.prompts_per_step={a.prompts}",
        *SHORT_RUN,
        f"rollout.n={group}",
        f"rollout.max_response_length={length}",
        f"cluster.procs_per_node={ranks}",
        f"cluster.cpus_per_proc={2 // ranks}",
        *a.overrides,
    ]
    mem = run_logged(cmd, run_dir.with_suffix(".log"), dict(__import__("os").environ))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if "time/step" in r][-1]
    return {
        "label": label,
        "length": length,
        "group": group,
        "ranks": ranks,
        "step_s": last["time/step"],
        "phases": {k[5:]: v for k, v in last.items() if k.startswith("time/") and k != "time/step"},
        "gen_tokens": last.get("batch/gen_tokens", 0.0),
        "train_tokens": last.get("actor/tokens", 0.0) * ranks,
        "worker_peak_rss_gb": last.get("memory/worker_peak_rss_gb_max"),
        "tree_peak_pss_gb": mem.get("peak_pss_mb", 0.0) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", default="all", choices=["all", "len", "group", "ranks"])
    ap.add_argument("--only", default="", help="comma-separated point labels, e.g. 'len 1024'")
    ap.add_argument("--prompts", type=int, default=2, help="prompts per step")
    ap.add_argument("--steps", type=int, default=2, help="steps per point; the last is timed")
    ap.add_argument("--workdir", default=str(HERE / ".scale-runs"))
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="extra config overrides")
    a = ap.parse_args()
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    only = {x.strip() for x in a.only.split(",") if x.strip()}
    for label, length, group, ranks in points(a.points):
        if only and label not in only:
            continue
        rows.append(run_point(a, label, length, group, ranks, workdir))
        r = rows[-1]
        print(f"{label}: {r['step_s']:.1f} s/step", flush=True)
    print(f"\nmachine: {machine()}; date {today()}")
    print(f"SmolLM2-135M, {a.prompts} prompts per step, every sample exactly the response length")
    print(
        "| point | samples | gen tokens | train tokens | step s | generate | update | sync "
        "| other | worker peak RSS GB | all processes peak PSS GB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        p = r["phases"]
        print(
            f"| {r['label']} | {a.prompts * r['group']} | {r['gen_tokens']:.0f} "
            f"| {r['train_tokens']:.0f} | {r['step_s']:.1f} | {p.get('generate', 0):.1f} "
            f"| {p.get('update', 0):.1f} | {p.get('sync', 0):.1f} "
            f"| {r['step_s'] - p.get('generate', 0) - p.get('update', 0) - p.get('sync', 0):.1f} "
            f"| {r['worker_peak_rss_gb'] or float('nan'):.2f} | {r['tree_peak_pss_gb']:.2f} |"
        )
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
