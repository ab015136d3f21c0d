"""Does the failure-driven loop help? Stage two on the original data vs on the loop's mix.

Stage one (SFT, the quickstart's settings) is given a systematic weakness: its worked solutions
hold only ``--borrow-keep`` of the 2-digit subtractions that borrow. Then, per seed:

    sft       SFT on the weakened set (the quickstart recipe, mode sft)
    loop      the failure loop on the SFT model: the RL pool as probes, arithmetic synthesizer,
              dedup against the pool, decontamination against the held-out files, mix
    rl_base   RL from the SFT model on the RL pool
    rl_loop   RL from the SFT model on the loop's mix: same steps, prompts per step, samples
    eval      every model above on the held-out set (natural mix) and on the weak slice
              (subtractions that borrow), k samples each

    python benchmarks/bench_failure_loop.py --out runs/bench_failure_loop --seeds 0 1 2

Prints held-out avg@k overall and on the weak slice per seed and arm, and the mean gain of
rl_loop over rl_base; everything lands in ``--out`` (``results.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "logics_rl", "recipes", "quickstart.yaml")


def borrows(p) -> bool:
    from logics_rl.failure_loop.arithmetic import Structure

    return p.op == "sub" and any(Structure.of(p.a, "-", p.b).columns)


def make_data(out: str, seed: int, borrow_keep: float, pool: int, val: int) -> dict[str, str]:
    """Distinct 2-digit problems: an RL pool and SFT set (the same problems; the SFT set keeps
    ``borrow_keep`` of its borrowing subtractions), a held-out natural set and a held-out weak
    slice (borrowing subtractions only), never seen in training."""
    from logics_rl.data.files import write_jsonl
    from logics_rl.data.synthetic import _rl_row, _sft_row, arithmetic_problem

    rng = random.Random(seed)
    seen, natural, weak = set(), [], []
    while len(natural) < pool + val or len(weak) < val:
        p = arithmetic_problem(rng, 2, 2)
        if p.prompt in seen:
            continue
        seen.add(p.prompt)
        if len(natural) < pool + val:
            natural.append(p)
        elif borrows(p):
            weak.append(p)
    train, held = natural[:pool], natural[pool:]
    keep = random.Random(seed + 1)
    sft = [p for p in train if not borrows(p) or keep.random() < borrow_keep]
    paths = {
        "rl_pool": os.path.join(out, "rl_pool.jsonl"),
        "sft": os.path.join(out, "sft_train.jsonl"),
        "val": os.path.join(out, "val_natural.jsonl"),
        "weak": os.path.join(out, "val_weak.jsonl"),
    }
    write_jsonl(paths["rl_pool"], [_rl_row(p) for p in train])
    write_jsonl(paths["sft"], [_sft_row(p) for p in sft])
    write_jsonl(paths["val"], [_rl_row(p) for p in held])
    write_jsonl(paths["weak"], [{**_rl_row(p), "data_source": "sub_borrow"} for p in weak])
    counts = {
        "rl_pool": len(train),
        "rl_pool_borrow": sum(map(borrows, train)),
        "sft": len(sft),
        "sft_borrow": sum(map(borrows, sft)),
        "val": len(held),
        "weak": len(weak),
    }
    with open(os.path.join(out, "data.json"), "w") as fh:
        json.dump({"paths": paths, "counts": counts}, fh, indent=2)
    return paths


def main_run(run_dir: str, *overrides: str) -> float:
    """``python -m logics_rl.main`` with the quickstart recipe; its wall time (skipped when the
    run directory holds a finished marker)."""
    marker = os.path.join(run_dir, "BENCH_DONE")
    if os.path.exists(marker):
        with open(marker) as fh:
            return float(fh.read())
    cmd = [sys.executable, "-m", "logics_rl.main", "-c", QUICKSTART, f"trainer.run_dir={run_dir}",
           "trainer.progress=false", "trainer.plot=false", *overrides]  # fmt: skip
    t0 = time.monotonic()
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "bench.log"), "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}\nsee {run_dir}/bench.log")
    seconds = time.monotonic() - t0
    with open(marker, "w") as fh:
        fh.write(str(seconds))
    return seconds


def evaluate(run_dir: str, model: str, paths: dict, k: int) -> dict:
    files = f"[{{path: {paths['val']}, name: natural}}, {{path: {paths['weak']}, name: weak}}]"
    main_run(run_dir, "mode=eval", f"model.path={model}", f"eval.files={files}", f"eval.k={k}")
    with open(os.path.join(run_dir, "summary.json")) as fh:
        s = json.load(fh)
    return {name: s[name]["all"][f"avg@{k}"] for name in ("natural", "weak")}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="runs/bench_failure_loop")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--borrow-keep", type=float, default=0.1)
    ap.add_argument("--pool", type=int, default=4000)
    ap.add_argument("--val", type=int, default=256)
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--rl-steps", type=int, default=70)
    ap.add_argument("--probes", type=int, default=512)
    ap.add_argument("--mix-ratio", type=float, default=0.4)
    ap.add_argument("--k", type=int, default=8)
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    paths = make_data(os.path.join(out, "data"), 1234, args.borrow_keep, args.pool, args.val)
    results: dict = {"args": vars(args), "seeds": {}}
    for seed in args.seeds:
        d = os.path.join(out, f"seed{seed}")
        common = [f"trainer.seed={seed}"]
        t = {}
        t["sft"] = main_run(f"{d}/sft", *common, "mode=sft", f"sft.train_files=[{paths['sft']}]",
                            f"sft.total_steps={args.sft_steps}")  # fmt: skip
        sft_model = f"{d}/sft/hf"
        t["loop"] = main_run(
            f"{d}/loop", *common, "mode=failure_loop", f"model.path={sft_model}",
            f"data.train_files=[{paths['rl_pool']}]", f"failure_loop.max_probes={args.probes}",
            "failure_loop.k=4", f"failure_loop.mix_ratio={args.mix_ratio}",
            f"failure_loop.seed={seed}",
            f"failure_loop.decontaminate_against=[{paths['val']},{paths['weak']}]",
            "curate.dedup.near=false",
        )  # fmt: skip
        with open(f"{d}/loop/failure_loop/report.json") as fh:
            loop = json.load(fh)
        rl = ["mode=rl", f"model.path={sft_model}", f"trainer.total_steps={args.rl_steps}",
              "validation.at_start=false", "validation.at_end=false"]  # fmt: skip
        t["rl_base"] = main_run(f"{d}/rl_base", *common, *rl,
                                f"data.train_files=[{paths['rl_pool']}]")  # fmt: skip
        t["rl_loop"] = main_run(f"{d}/rl_loop", *common, *rl,
                                f"data.train_files=[{loop['train_file']}]")  # fmt: skip
        step = f"checkpoints/step_{args.rl_steps}"
        scores = {
            "sft": evaluate(f"{d}/eval_sft", sft_model, paths, args.k),
            "rl_base": evaluate(f"{d}/eval_base", f"{d}/rl_base/{step}", paths, args.k),
            "rl_loop": evaluate(f"{d}/eval_loop", f"{d}/rl_loop/{step}", paths, args.k),
        }
        steps = {s["name"]: s for s in loop["steps"]}
        results["seeds"][seed] = {
            "scores": scores, "seconds": t,
            "loop": {"failures": steps["evaluate"]["extra"]["failures"],
                     "probes": steps["evaluate"]["extra"]["probes"],
                     "by_source": steps["evaluate"]["extra"]["by_source"],
                     "candidates": steps["synthesize"]["extra"]["candidates"],
                     "kept": len(steps["filter"].get("rows", [])) or None,
                     "mix": steps["mix"]["extra"]},
        }  # fmt: skip
        print(f"seed {seed}: " + "  ".join(
            f"{arm} natural {s['natural']:.3f} weak {s['weak']:.3f}" for arm, s in scores.items()
        ), flush=True)  # fmt: skip
        with open(os.path.join(out, "results.json"), "w") as fh:
            json.dump(results, fh, indent=2)
    seeds = results["seeds"].values()
    for part in ("natural", "weak"):
        gains = [s["scores"]["rl_loop"][part] - s["scores"]["rl_base"][part] for s in seeds]
        print(f"{part}: rl_loop - rl_base = {100 * sum(gains) / len(gains):+.1f} points "
              f"(per seed {', '.join(f'{100 * g:+.1f}' for g in gains)})")  # fmt: skip


if __name__ == "__main__":
    main()
