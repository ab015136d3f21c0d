"""MinHash dedup of planted duplicates through HF datatrove's pipeline: its side of the curation
benchmark, and the harness the logics-rl side shares.

    python benchmarks/bench_curate_datatrove.py                       # 1,000,000 rows, 1 and 2 workers
    python benchmarks/bench_curate_datatrove.py --rows 100000 --workers 1
    python benchmarks/bench_curate_datatrove.py --threshold 0.8 --num-perm 128 --shingle 5

The data: ``logics_rl.curate.planted.planted_rows(--rows, seed=--seed)`` (5% exact copies with
cosmetic differences, 10% near copies at measured shingle Jaccard 0.9 / 0.8 / 0.7 / 0.5),
written once by ``write_planted`` as ``--shards`` JSONL files (``uid, question, answer,
solution, source, cluster, kind, level, jaccard, contaminated``) plus ``truth.jsonl`` (the
ground-truth fields only), and reused while its ``manifest.json`` matches.

datatrove 0.10.1 runs in its own virtual environment (``benchmarks/.datatrove-venv``, built on
first use by ``ensure_datatrove_venv``; never a dependency of the package) through
``benchmarks/_datatrove_minhash.py``: its documented four stages (signatures, buckets, cluster,
filter) as ``LocalPipelineExecutor`` runs, on the ``question`` field, with
``MinhashConfig(n_grams=--shingle, num_buckets=bands, hashes_per_bucket=rows)`` and every other
setting at datatrove's default. ``bands x rows`` is the split of ``--num-perm`` whose LSH
threshold ``(1 / bands) ** (1 / rows)`` is nearest ``--threshold`` (``lsh_bands``): 16 x 8 for
0.7 / 128, threshold 0.707 (datatrove's own default is 14 x 8 = 112 hashes, threshold 0.72);
``--bands`` / ``--band-rows`` override it. What datatrove then does that a reader should know:

- Text: ``simplify_text`` lower-cases, replaces every run of digits (with decimals) by ``0``,
  turns punctuation into spaces (``\\ { } ^ $ ? .`` included, so ``\\frac{37}{7}`` becomes
  ``frac 0 0``), collapses whitespace and strips diacritics; then spaCy's blank English
  tokenizer splits words. Its shingles are ``n_grams`` of those words, hashed with 64-bit
  xxhash, so its Jaccard of a near copy is not exactly the planted one (measured on
  ``logics_rl.curate.text.shingles``, which keeps symbols and numbers as tokens).
- A document is a duplicate when one of its ``bands`` band signatures equals another
  document's; clusters come from union-find (union by size: the survivor of a cluster is not
  always its first row, so an original can be removed while a copy stays; the scores say how
  often: ``originals_removed``, and the cluster-level ``recall_any_survivor`` /
  ``precision_any_member``).
- Stage 2 needs ``tasks % bands == 0`` (it runs ``bands`` tasks); stages 1 and 4 one task per
  shard; stage 3 is single-task. ``--workers`` is the pool size of stages 1, 2 and 4.
- The deduplicated output is written uncompressed (datatrove's ``JsonlWriter`` default is
  gzip; ``--compression gzip`` restores it), so the output format costs what ours would.

Per run it reports seconds per stage and in all (stages only; ``wall_s`` adds the driver's
start-up and reading the kept ids back), rows/s over the stage total, peak memory of the whole
process tree (driver, datatrove's multiprocess manager, forkserver and pool workers: the sum of
RSS, and of PSS, sampled every 0.2 s with psutil by ``peak_rss_of``) and the dedup scores of
``logics_rl.curate.planted.dedup_scores`` (recall at ``--threshold``, precision, per level).
Results go to ``--out`` (default ``<workdir>/bench_curate_datatrove.json``).

Importable: ``write_planted``, ``iter_truth``, ``run_datatrove``, ``peak_rss_of`` (and
``TreeSampler``), ``lsh_bands``, ``score``, ``print_run`` do nothing at import time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import TreeSampler  # noqa: E402

ROOT = HERE.parent
VENV = HERE / ".datatrove-venv"
DRIVER = HERE / "_datatrove_minhash.py"
# datatrove itself, plus what its MinHash pipeline imports that its base install lacks: orjson
# (JsonlReader / JsonlWriter), regex (simplify_text), xxhash (the default shingle hash), spaCy
# (its English word tokenizer; only its `multilingual` extra lists it) and tokenizers (imported
# by `datatrove.pipeline.dedup`'s __init__ for exact-substring dedup, unused here). Its
# `processing` extra (fasttext, nltk, trafilatura, ...) is not needed.
DATATROVE_PINS = (
    "datatrove==0.10.1",
    "orjson==3.13.0",
    "regex==2026.11.19",
    "xxhash==3.8.2",
    "spacy==3.8.18",
    "tokenizers==0.23.3",
)
TRUTH_FIELDS = ("uid", "kind", "cluster", "level", "jaccard", "contaminated")
ROW_FIELDS = (
    "uid",
    "question",
    "answer",
    "solution",
    "source",
    "cluster",
    "kind",
    "level",
    "jaccard",
    "contaminated",
)


# --------------------------------------------------------------------------- datatrove environment
def ensure_datatrove_venv() -> dict[str, Any]:
    """Build ``benchmarks/.datatrove-venv`` once (``DATATROVE_PINS``); returns its python and how
    long the build took (0 when it was there)."""
    stamp = VENV / ".installed"
    seconds = 0.0
    if not stamp.exists():
        print(f"building {VENV} ({', '.join(DATATROVE_PINS)}) ...", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        for args in (("--upgrade", "pip"), DATATROVE_PINS):
            cmd = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", *args]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(
                    f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
                )
        seconds = time.perf_counter() - t0
        stamp.write_text(f"{seconds:.1f}\n", encoding="utf-8")
        print(f"built in {seconds:.0f} s", flush=True)
    return {"python": str(VENV / "bin" / "python"), "build_s": seconds}


# --------------------------------------------------------------------------- memory
def peak_rss_of(
    target: Sequence[str] | Callable[[], Any],
    *,
    every_s: float = 0.2,
    log: str | Path | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    check: bool = True,
) -> tuple[Any, dict[str, float]]:
    """Run ``target`` and sample the peak memory of its process tree every ``every_s`` seconds.

    ``target`` is a command (argv list: run as a subprocess, output to ``log`` or discarded;
    returns its exit code, raising on failure when ``check``) or a callable (run here: the tree
    is this process and its children, so what this process already holds counts too; returns
    its value). The second value is ``{"peak_rss_mb", "peak_pss_mb", "peak_procs", "samples",
    "wall_s"}``, plus for a callable ``self_maxrss_mb``: this process's lifetime high-water
    mark (``getrusage``), which also catches a peak shorter than ``every_s``."""
    t0 = time.perf_counter()
    if callable(target):
        import resource

        sampler = TreeSampler(os.getpid(), every_s)
        try:
            value = target()
        finally:
            mem = sampler.stop()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return value, {**mem, "self_maxrss_mb": maxrss, "wall_s": time.perf_counter() - t0}
    cmd = [str(c) for c in target]
    out = open(log, "w", encoding="utf-8") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid, every_s)
        rc = proc.wait()
        mem = sampler.stop()
    finally:
        if log:
            out.close()
    if check and rc != 0:
        tail = Path(log).read_text(encoding="utf-8", errors="replace")[-4000:] if log else ""
        raise RuntimeError(f"{cmd[:3]} exited with {rc}; last lines of {log}:\n{tail}")
    return rc, {**mem, "wall_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- data
def write_planted(
    out_dir: str | Path, n: int, shards: int = 4, seed: int = 0, **planted: Any
) -> dict[str, Any]:
    """Stream ``planted_rows(n, seed=seed, **planted)`` into ``shards`` JSONL files
    (``<out_dir>/shards/planted_00000.jsonl`` ..., consecutive uid ranges, fields
    ``ROW_FIELDS``) and ``<out_dir>/truth.jsonl`` (``TRUTH_FIELDS``, what ``dedup_scores``
    needs). Memory stays bounded (one row at a time, the generator's reservoir). Returns the
    paths, counts by kind, bytes, seconds and rows/s; also written as ``manifest.json``."""
    from logics_rl.curate.planted import planted_rows

    out = Path(out_dir)
    shard_dir = out / "shards"
    if shard_dir.exists():
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True)
    paths = [shard_dir / f"planted_{i:05d}.jsonl" for i in range(shards)]
    bounds = [n * (i + 1) // shards for i in range(shards)]
    kinds: dict[str, int] = {}
    t0 = time.perf_counter()
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    with open(out / "truth.jsonl", "w", encoding="utf-8") as truth:
        shard, fh = 0, open(paths[0], "w", encoding="utf-8")  # noqa: SIM115
        try:
            for row in planted_rows(n, seed=seed, **planted):
                while row["uid"] >= bounds[shard]:
                    fh.close()
                    shard += 1
                    fh = open(paths[shard], "w", encoding="utf-8")  # noqa: SIM115
                fh.write(dumps(row) + "\n")
                truth.write(dumps({k: row[k] for k in TRUTH_FIELDS}) + "\n")
                kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
        finally:
            fh.close()
    seconds = time.perf_counter() - t0
    manifest = {
        "rows": n,
        "shards": shards,
        "seed": seed,
        "planted": planted,
        "paths": [str(p) for p in paths],
        "shard_dir": str(shard_dir),
        "truth": str(out / "truth.jsonl"),
        "kinds": kinds,
        "bytes": sum(p.stat().st_size for p in paths),
        "seconds": seconds,
        "rows_per_s": n / seconds if seconds else 0.0,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def planted_data(out_dir: str | Path, n: int, shards: int, seed: int) -> dict[str, Any]:
    """``write_planted``, unless ``out_dir`` already holds the same rows (same manifest)."""
    path = Path(out_dir) / "manifest.json"
    if path.exists():
        m = json.loads(path.read_text(encoding="utf-8"))
        if (m["rows"], m["shards"], m["seed"], m["planted"]) == (n, shards, seed, {}) and all(
            Path(p).exists() for p in m["paths"]
        ):
            return {**m, "reused": True}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return {**write_planted(out_dir, n, shards, seed), "reused": False}


def iter_truth(path: str | Path) -> Iterator[dict]:
    """The ground-truth rows ``write_planted`` wrote, one dict at a time."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


# --------------------------------------------------------------------------- datatrove
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands * rows == num_perm`` whose LSH threshold
    ``(1 / bands) ** (1 / rows)`` (where the S-curve ``1 - (1 - s**rows) ** bands`` is steepest)
    is nearest ``threshold``: (16, 8) for 0.7 / 128, (9, 13) is not a split of 128."""
    splits = [(b, num_perm // b) for b in range(1, num_perm + 1) if num_perm % b == 0]
    return min(splits, key=lambda br: abs((1 / br[0]) ** (1 / br[1]) - threshold))


def run_datatrove(
    input_dir: str | Path,
    work_dir: str | Path,
    *,
    threshold: float = 0.7,
    num_perm: int = 128,
    shingle_size: int = 5,
    workers: int = 1,
    bands: int | None = None,
    rows: int | None = None,
    text_key: str = "question",
    id_key: str = "uid",
    compression: str | None = None,
    every_s: float = 0.2,
) -> dict[str, Any]:
    """Run datatrove's four MinHash stages over the ``*.jsonl`` files of ``input_dir`` (one
    stage-1 / stage-4 task per file) in ``benchmarks/.datatrove-venv``; ``work_dir`` is wiped
    first (datatrove skips tasks it finds completed there).

    ``bands`` x ``rows`` default to ``lsh_bands(threshold, num_perm)``; given, they must
    multiply to ``num_perm``. Returns seconds per stage (``stages``) and their sum
    (``total_s``), ``rows_per_s`` over that sum, ``wall_s`` (the whole subprocess), the
    ``kept_uids`` (a sorted list of ints), ``kept`` / ``removed``, the process tree's
    ``peak_rss_mb`` / ``peak_pss_mb``, ``workers``, ``tasks``, the LSH split and datatrove's
    config as it printed it."""
    env_info = ensure_datatrove_venv()
    if bands is None and rows is None:
        bands, rows = lsh_bands(threshold, num_perm)
    elif bands is None or rows is None or bands * rows != num_perm:
        raise ValueError(f"bands x rows must be given together and equal num_perm={num_perm}")
    if workers not in (1, 2):
        raise ValueError("workers must be 1 or 2 on this benchmark")
    files = sorted(Path(input_dir).glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no *.jsonl in {input_dir}")
    n_rows = 0
    for f in files:
        with open(f, "rb") as fh:
            n_rows += sum(1 for _ in fh)
    work = Path(work_dir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    spec = {
        "input_dir": str(Path(input_dir).resolve()),
        "work_dir": str(work),
        "text_key": text_key,
        "id_key": id_key,
        "n_grams": shingle_size,
        "bands": bands,
        "rows": rows,
        "tasks": len(files),
        "workers": workers,
        "compression": compression,
        "result_path": str(work / "result.json"),
        "kept_path": str(work / "kept.txt"),
    }
    (work / "spec.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    cmd = [env_info["python"], str(DRIVER), str(work / "spec.json")]
    _, mem = peak_rss_of(cmd, every_s=every_s, log=work / "datatrove.log", env=env, cwd=ROOT)
    result = json.loads((work / "result.json").read_text(encoding="utf-8"))
    kept = sorted(int(x) for x in (work / "kept.txt").read_text(encoding="utf-8").split())
    total = sum(result["seconds"].values())
    return {
        "tool": "datatrove",
        "rows": n_rows,
        "stages": result["seconds"],
        "total_s": total,
        "rows_per_s": n_rows / total if total else 0.0,
        "wall_s": mem["wall_s"],
        "peak_rss_mb": mem["peak_rss_mb"],
        "peak_pss_mb": mem.get("peak_pss_mb"),
        "peak_procs": mem["peak_procs"],
        "memory_samples": mem["samples"],
        "workers": workers,
        "tasks": len(files),
        "threshold": threshold,
        "num_perm": num_perm,
        "shingle_size": shingle_size,
        "bands": bands,
        "band_rows": rows,
        "lsh_threshold": (1 / bands) ** (1 / rows),
        "kept": len(kept),
        "removed": n_rows - len(kept),
        "kept_uids": kept,
        "datatrove": {k: v for k, v in result.items() if k not in ("seconds", "kept")},
        "venv_build_s": env_info["build_s"],
        "log": str(work / "datatrove.log"),
    }


def score(kept_uids: Sequence[int], truth_path: str | Path, threshold: float) -> dict[str, Any]:
    """``dedup_scores`` of the kept uids against ``truth.jsonl``."""
    from logics_rl.curate.planted import dedup_scores

    return dedup_scores(kept_uids, iter_truth(truth_path), threshold)


# --------------------------------------------------------------------------- report
def print_run(run: dict[str, Any], scores: dict[str, Any]) -> None:
    st = run["stages"]
    print(
        f"\n{run['tool']}, {run['rows']:,} rows, {run['workers']} worker(s), {run['tasks']} tasks, "
        f"{run['bands']} bands x {run['band_rows']} rows (LSH threshold {run['lsh_threshold']:.3f})"
    )
    print("  stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
    print(
        f"  total {run['total_s']:.1f} s ({run['rows_per_s']:,.0f} rows/s; wall with start-up "
        f"{run['wall_s']:.1f} s), peak RSS {run['peak_rss_mb']:,.0f} MB"
        + (f" (PSS {run['peak_pss_mb']:,.0f} MB)" if run.get("peak_pss_mb") else "")
        + f" over up to {run['peak_procs']} processes"
    )
    print(
        f"  removed {scores['removed']:,} / {scores['rows']:,}; recall {scores['recall']:.4f} "
        f"(at Jaccard >= {scores['threshold']}), precision {scores['precision']:.4f}; "
        f"cluster-level recall {scores['recall_any_survivor']:.4f}, precision "
        f"{scores['precision_any_member']:.4f}"
    )
    print(
        f"  survivors per cluster (max) {scores['survivors_per_cluster_max']}, clusters emptied "
        f"{scores['clusters_emptied']}, originals removed {scores['originals_removed']}"
    )
    levels = ", ".join(
        f"{lv}: {d['recall']:.3f} (J~{d['jaccard_mean']:.2f})"
        for lv, d in scores["by_level"].items()
    )
    exact = scores["by_kind"].get("exact", {}).get("recall", float("nan"))
    print(f"  removed per level: exact {exact:.3f}, near {levels}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], choices=(1, 2))
    ap.add_argument("--bands", type=int, default=None, help="LSH bands (with --band-rows)")
    ap.add_argument("--band-rows", type=int, default=None, help="rows per band (with --bands)")
    ap.add_argument("--shards", type=int, default=4, help="input JSONL files = stage 1/4 tasks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compression", choices=("none", "gzip"), default="none")
    ap.add_argument("--workdir", default=str(ROOT / "runs" / "bench_curate_datatrove"))
    ap.add_argument("--out", default=None, help="JSON path (default: WORKDIR/<name>.json)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    a = parse_args(argv)
    work = Path(a.workdir).resolve()
    data_dir = work / f"data_{a.rows}_{a.shards}_{a.seed}"
    env_info = ensure_datatrove_venv()
    data = planted_data(data_dir, a.rows, a.shards, a.seed)
    how = "reused" if data["reused"] else f"written in {data['seconds']:.1f} s"
    print(
        f"planted data: {a.rows:,} rows in {a.shards} shards ({data['bytes'] / 2**20:,.0f} MB, "
        f"{how}, {data['rows_per_s']:,.0f} rows/s when written), kinds {data['kinds']}"
    )
    runs = []
    for workers in a.workers:
        print(f"running datatrove with {workers} worker(s) ...", flush=True)
        run = run_datatrove(
            data["shard_dir"],
            tempfile.mkdtemp(prefix=f"dt_w{workers}_", dir=work),
            threshold=a.threshold,
            num_perm=a.num_perm,
            shingle_size=a.shingle,
            workers=workers,
            bands=a.bands,
            rows=a.band_rows,
            compression=None if a.compression == "none" else a.compression,
        )
        scores = score(run.pop("kept_uids"), data["truth"], a.threshold)
        print_run(run, scores)
        runs.append({"run": run, "scores": scores})
        for big in ("output", "signatures", "buckets"):  # ~1 GB each at 1M rows; logs stay
            shutil.rmtree(Path(run["log"]).parent / big, ignore_errors=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}",
        "args": vars(a),
        "data": data,
        "datatrove_venv": {"pins": DATATROVE_PINS, **env_info},
        "runs": runs,
    }
    out = Path(a.out) if a.out else work / f"bench_curate_datatrove_{a.rows}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main()
