"""The data engine's dedup and decontamination at scale, side by side with HF datatrove's MinHash
dedup on the same planted data, in one run.

    python benchmarks/bench_curate.py                      # 1,000,000 rows, 1 and 2 workers, datatrove too
    python benchmarks/bench_curate.py --rows 100000 --workers 2 --skip-datatrove

Data: ``planted_rows(--rows)`` (5 % exact copies with cosmetic differences, 10 % near copies at
shingle Jaccard 0.9 / 0.8 / 0.7 / 0.5) with a 2,000-question benchmark fixture of which 1,000
copy training originals and ``--contaminate`` training rows copy benchmark questions, written
as ``--shards`` jsonl files (``bench_curate_datatrove.write_planted``).

logics-rl: ``python -m logics_rl.main mode=curate`` with ``curate.stages=[dedup,
decontaminate]`` and ``curate.workers`` = 1 or 2 (a fresh local Ray instance each), the same
bands x rows as datatrove (``lsh_bands``: 16 x 8 for 0.7 / 128). Reported per run: seconds and
rows/s of each step (from its report), the command's wall time (Ray start-up and reading the
files included), the peak memory of the whole process tree (driver, Ray's processes, every
worker: sum of RSS and of PSS), and the dedup scores of ``planted.dedup_scores`` at the
threshold: ``recall_any_survivor`` / ``precision_any_member`` are the cluster-level figures
(a duplicate counts as found when its cluster keeps one row, whichever row that is, as the two
tools choose survivors by different rules), and decontamination recall / precision against the
planted ``contaminated`` flags. datatrove: ``bench_curate_datatrove.run_datatrove`` (its four
stages, its own normalisation, stage times only).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_curate_datatrove import (  # noqa: E402
    iter_truth,
    lsh_bands,
    peak_rss_of,
    run_datatrove,
    score,
    write_planted,
)
from common import MachineCpu  # noqa: E402


def make_data(work: Path, rows: int, shards: int, seed: int, contaminate: int) -> dict:
    from logics_rl.curate.planted import benchmark_rows, planted_rows

    originals = []
    for r in planted_rows(rows, seed=seed):
        if r["kind"] == "original":
            originals.append(r)
            if len(originals) == 1000:
                break
    bench = benchmark_rows(originals, 2000, seed=seed, copied=1000)
    bench_path = work / "benchmark.jsonl"
    with open(bench_path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(b) + "\n" for b in bench)
    info = write_planted(work, rows, shards, seed, benchmark=bench, contaminate=contaminate)
    return {**info, "benchmark": str(bench_path)}


def run_logics(work: Path, data_dir: Path, bench: str, args, workers: int, bands: int, rows: int):
    run_dir = work / f"logics_w{workers}"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    cmd = [
        sys.executable,
        "-m",
        "logics_rl.main",
        "mode=curate",
        f"trainer.run_dir={run_dir}",
        f"curate.inputs=[{{path: '{data_dir}/shards/*.jsonl'}}]",
        "curate.stages=[dedup,decontaminate]",
        f"curate.workers={workers}",
        f"curate.dedup.threshold={args.threshold}",
        f"curate.dedup.num_perm={args.num_perm}",
        f"curate.dedup.shingle_size={args.shingle}",
        f"curate.dedup.bands={bands}",
        f"curate.dedup.rows={rows}",
        "curate.dedup.keep=first",
        f"curate.decontaminate.benchmarks=[{{path: {bench}, field: problem, name: fixture}}]",
    ]
    env = {**os.environ, "COLUMNS": "200"}
    cpu = MachineCpu()
    try:
        _, mem = peak_rss_of(cmd, log=work / f"logics_w{workers}.log", env=env)
    finally:
        cpu.stop()
    with open(run_dir / "report.json", encoding="utf-8") as fh:
        rep = json.load(fh)
    steps = {s["name"]: s for s in rep["steps"]}
    for s in steps.values():  # the machine's busy cores while the step ran
        s["cores_busy"] = cpu.cores(s["started"], s["started"] + s["seconds"])
    return run_dir, steps, mem


def kept(run_dir: Path, step: str) -> set[int]:
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    (d,) = glob.glob(str(run_dir / "curate" / f"*-{step}-*"))
    t = pads.dataset(os.path.join(d, "data"), format="parquet").to_table(columns=["id", "_drop"])
    return set(t.filter(pc.is_null(t["_drop"]))["id"].to_pylist())


def decon_scores(run_dir: Path, truth: Path) -> dict:
    """Recall / precision of the rows decontamination removed against the planted flags (rows
    dedup removed are out of its reach and left out of both)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    (d,) = glob.glob(str(run_dir / "curate" / "*-decontaminate-*"))
    t = pads.dataset(os.path.join(d, "data"), format="parquet").to_table(columns=["id", "_drop"])
    seen = set(t["id"].to_pylist())
    removed = set(t.filter(pc.is_valid(t["_drop"]))["id"].to_pylist())
    flagged = {r["uid"] for r in iter_truth(truth) if r["contaminated"] and r["uid"] in seen}
    hit = len(removed & flagged)
    return {
        "flagged": len(flagged),
        "removed": len(removed),
        "recall": hit / len(flagged) if flagged else 1.0,
        "precision": hit / len(removed) if removed else 1.0,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle", type=int, default=5)
    ap.add_argument("--contaminate", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--workdir", default=str(HERE / ".curate-bench"))
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    bands, rows = lsh_bands(args.threshold, args.num_perm)
    t0 = time.perf_counter()
    data = make_data(work, args.rows, args.shards, args.seed, args.contaminate)
    print(f"data: {args.rows} rows in {args.shards} shards, {time.perf_counter() - t0:.0f} s")
    truth = work / "truth.jsonl"
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "args": vars(args),
        "bands": bands,
        "rows_per_band": rows,
        "runs": [],
    }
    for w in args.workers:
        run_dir, steps, mem = run_logics(work, work, data["benchmark"], args, w, bands, rows)
        d, c = steps["dedup"], steps["decontaminate"]
        ds = score(sorted(kept(run_dir, "dedup")), truth, args.threshold)
        res = {
            "tool": "logics-rl",
            "workers": w,
            "dedup_s": d["seconds"],
            "dedup_rows_per_s": d["rows_in"] / d["seconds"],
            "decontaminate_s": c["seconds"],
            "decontaminate_rows_per_s": c["rows_in"] / c["seconds"],
            "dedup_cores_busy": d["cores_busy"],
            "decontaminate_cores_busy": c["cores_busy"],
            "wall_s": mem["wall_s"],
            "peak_rss_mb": mem["peak_rss_mb"],
            "peak_pss_mb": mem["peak_pss_mb"],
            "dedup": {k: ds[k] for k in ("recall_any_survivor", "precision_any_member", "removed")},
            "decontaminate": decon_scores(run_dir, truth),
        }
        results["runs"].append(res)
        print(json.dumps(res))
        if not args.skip_datatrove:
            dt = run_datatrove(
                work / "shards",
                work / f"datatrove_w{w}",
                threshold=args.threshold,
                num_perm=args.num_perm,
                shingle_size=args.shingle,
                workers=w,
                bands=bands,
                rows=rows,
            )
            dts = score(dt["kept_uids"], truth, args.threshold)
            res_dt = {
                "tool": "datatrove",
                "workers": w,
                "dedup_s": dt["total_s"],
                "dedup_rows_per_s": dt["rows_per_s"],
                "wall_s": dt["wall_s"],
                "peak_rss_mb": dt["peak_rss_mb"],
                "peak_pss_mb": dt["peak_pss_mb"],
                "dedup": {
                    k: dts[k] for k in ("recall_any_survivor", "precision_any_member", "removed")
                },
            }
            results["runs"].append(res_dt)
            print(json.dumps(res_dt))
            res["vs_datatrove"] = {
                "dedup_speed": res["dedup_rows_per_s"] / res_dt["dedup_rows_per_s"],
                "recall": res["dedup"]["recall_any_survivor"]
                / max(res_dt["dedup"]["recall_any_survivor"], 1e-9),
            }
            print(
                f"workers {w}: dedup {res['vs_datatrove']['dedup_speed']:.2f}x datatrove's "
                f"rows/s at {res['vs_datatrove']['recall']:.3f}x its recall"
            )
    out = work / "bench_curate.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return results


if __name__ == "__main__":
    main()
