"""Does the failure-driven loop help? Stage two on the original data vs on the loop's mix.

``recipes/failure_loop_arith_cpu.yaml`` leaves stage one a weakness (few worked subtractions
that borrow) and runs SFT -> failure loop -> RL. Per seed, this script runs that recipe (arm
``loop``) and then, from the same SFT model, the same RL stage on the original training set
(arm ``base``: ``mode=rl model.path=<loop run>/sft/hf``): equal RL steps, prompts per step and
samples. With ``failure_loop.sft_steps`` the loop arm's RL starts from a continued SFT on the
loop's worked solutions; a third arm, ``control``, then spends the same SFT steps (same learning
rate and warm-up) on stage one's own conversations before the same RL on the original set, so the
loop is also compared at equal compute. Every arm ends with the held-out validation
(``validation.k`` samples per problem), overall and per data source; ``sub_2d_borrow`` is the weak
slice.

    python benchmarks/bench_failure_loop.py --out runs/bench_failure_loop --seeds 0 1 2
    python benchmarks/bench_failure_loop.py trainer.total_steps=100 --seeds 0 1 2   # overrides first

Prints avg@k per seed and arm (SFT, base, loop, control; overall, weak slice, the other
sources), the gains of ``loop`` over ``base`` (and over ``control``), and the loop's own cost;
``results.json`` in ``--out``. A run directory that finished is reused when the script is run
again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from logics_rl.config.loader import load_config
from logics_rl.trainer.stages import continued_sft

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "failure_loop_arith_cpu.yaml")
WEAK = "sub_2d_borrow"


def main_run(run_dir: str, *overrides: str) -> float:
    """``python -m logics_rl.main -c RECIPE`` into ``run_dir``; its wall seconds (a finished
    run directory is reused)."""
    marker = os.path.join(run_dir, "BENCH_DONE")
    if os.path.exists(marker):
        with open(marker) as fh:
            return float(fh.read())
    cmd = [sys.executable, "-m", "logics_rl.main", "-c", RECIPE, f"trainer.run_dir={run_dir}",
           "trainer.progress=false", "trainer.plot=false", *overrides]  # fmt: skip
    os.makedirs(run_dir, exist_ok=True)
    t0 = time.monotonic()
    with open(os.path.join(run_dir, "bench.log"), "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}\nsee {run_dir}/bench.log")
    seconds = time.monotonic() - t0
    with open(marker, "w") as fh:
        fh.write(str(seconds))
    return seconds


def scores(metrics: dict) -> dict:
    out = {"overall": metrics["val/avg@k"]}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "avg@k":
            out[parts[1]] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="runs/bench_failure_loop")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("overrides", nargs="*", help="recipe overrides for both arms (key=value)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    cfg = load_config(RECIPE, args.overrides)
    # the control: the continued SFT's schedule on stage one's data
    sft = continued_sft(cfg)
    control = [] if cfg.failure_loop.sft_steps == 0 else [
        "mode=sft_rl", "failure_loop.enabled=false", f"sft.total_steps={sft.total_steps}",
        f"sft.optim.lr={sft.optim.lr}", f"sft.optim.warmup_steps={sft.optim.warmup_steps}",
    ]  # fmt: skip
    results: dict = {"recipe": RECIPE, "overrides": args.overrides, "seeds": {}}
    for seed in args.seeds:
        d = os.path.join(out, f"seed{seed}")
        common = [f"trainer.seed={seed}", *args.overrides]
        t_loop = main_run(f"{d}/loop", *common)
        t_base = main_run(f"{d}/base", *common, "mode=rl", f"model.path={d}/loop/sft/hf")
        if control:
            t_control = main_run(f"{d}/control", *common, *control, f"model.path={d}/loop/sft/hf")
        with open(f"{d}/loop/summary.json") as fh:
            loop = json.load(fh)
        with open(f"{d}/base/summary.json") as fh:
            base = json.load(fh)
        with open(f"{d}/loop/failure_loop/report.json") as fh:
            report = {s["name"]: s for s in json.load(fh)["steps"]}
        row = {
            "sft": scores(loop.get("SFT (stage one)", base["initial policy"])),
            "sft_seen_by_base": scores(base["initial policy"]),
            "base": scores(base["after RL"]),
            "loop": scores(loop["SFT + RL (stage two)"]),
            "seconds": {"loop_run": t_loop, "base_run": t_base,
                        "loop_steps": {n: s["seconds"] for n, s in report.items()}},
            "loop_report": {"failures": report["evaluate"]["extra"]["failures"],
                     "by_source": report["evaluate"]["extra"]["by_source"],
                     "candidates": report["synthesize"]["extra"]["candidates"],
                     "filtered": report["filter"]["dropped"],
                     "mix": report["mix"]["extra"]},
        }  # fmt: skip
        if "SFT + continued SFT" in loop:  # failure_loop.sft_steps: RL started from it
            row["continued_sft"] = scores(loop["SFT + continued SFT"])
        if control:
            with open(f"{d}/control/summary.json") as fh:
                ctrl = json.load(fh)
            row["control_sft"] = scores(ctrl["SFT (stage one)"])  # after its SFT steps
            row["control"] = scores(ctrl["SFT + RL (stage two)"])
            row["seconds"]["control_run"] = t_control
        results["seeds"][seed] = row
        with open(os.path.join(out, "results.json"), "w") as fh:
            json.dump(results, fh, indent=2)
        arms = ("sft", "continued_sft", "base", "loop", "control_sft", "control")
        print(f"seed {seed}: " + "  ".join(
            f"{arm} overall {row[arm]['overall']:.3f} weak {row[arm][WEAK]:.3f}"
            for arm in arms if arm in row
        ), flush=True)  # fmt: skip
    rows = list(results["seeds"].values())
    for other in ("base", "control") if control else ("base",):
        for part in ("overall", WEAK, "add_2d", "sub_2d"):
            gains = np.array([r["loop"][part] - r[other][part] for r in rows])
            print(f"{part:>14}: loop - {other:<7} = {100 * gains.mean():+.1f} points "
                  f"(per seed {', '.join(f'{100 * g:+.1f}' for g in gains)})")  # fmt: skip


if __name__ == "__main__":
    main()
