"""Curate a generated arithmetic collection with every step of the data engine, in about two
minutes on a laptop CPU (no model, no download).

The raw collection is the built-in arithmetic task, made dirty on purpose:
- exact duplicates that differ only in case and spacing (``COMPUTE   12+34.``),
- near duplicates: the same problem phrased differently (``Please compute 12+34.``),
- evaluation problems, reworded, in the training collection (contamination: the evaluation
  questions are shorter than the 13-word n-gram, so each must appear whole),
- rows without an answer (removed by the ``verifiable`` filter).
Then ``mode: curate`` runs annotate -> dedup -> decontaminate -> stratify and prints each step's
rows in / out and what it removed, why; the curated RL and SFT sets land in ``<out>/output``.

    python examples/curate_arith.py --out runs/curate_arith
    python -m logics_rl.main --config recipes/smollm2_arith_cpu.yaml \\
        data.train_files=[runs/curate_arith/output/rl]   # train on the curated set
"""

from __future__ import annotations

import argparse
import json
import os
import random

from logics_rl.data.synthetic import arithmetic_problem


def raw_rows(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """``n`` problems made into a dirty training collection, and a 40-problem evaluation set."""
    rng = random.Random(seed)
    problems, seen = [], set()
    while len(problems) < n + 40:
        p = arithmetic_problem(rng, 2, 4)
        if p.prompt not in seen:
            seen.add(p.prompt)
            problems.append(p)
    evaluation, train = problems[:40], problems[40:]

    def row(p, question=None, answer="same") -> dict:
        q = question or p.prompt.split(" Put the final")[0]  # "Compute 12+34."
        a = p.answer if answer == "same" else answer
        return {"problem": q, "answer": a, "solution": p.worked(), "source": p.source}

    rows = []
    for i, p in enumerate(train):
        rows.append(row(p))
        q = rows[-1]["problem"]
        if i % 10 == 0:  # exact: case and spacing only
            rows.append(row(p, "  " + q.upper().replace(" ", "   ")))
        if i % 10 == 5:  # near: the same problem, phrased differently
            rows.append(row(p, "Please " + q[0].lower() + q[1:]))
        if i % 25 == 3:  # no answer: not verifiable
            rows.append(row(p, q + " (draft)", answer=None))
    for p in evaluation[:12]:  # contamination: evaluation problems, reworded
        rows.append(row(p, "Please " + row(p)["problem"][0].lower() + row(p)["problem"][1:]))
    rng.shuffle(rows)
    bench = [{"question": row(p)["problem"], "answer": p.answer} for p in evaluation]
    return rows, bench


def write_jsonl(path: str, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/curate_arith")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from rich.console import Console

    from logics_rl.config.loader import load_config
    from logics_rl.trainer.stages import run

    raw_dir = os.path.join(args.out, "raw")
    os.makedirs(raw_dir, exist_ok=True)
    rows, bench = raw_rows(args.rows, args.seed)
    train = write_jsonl(os.path.join(raw_dir, "arith_raw.jsonl"), rows)
    evaluation = write_jsonl(os.path.join(raw_dir, "arith_eval.jsonl"), bench)
    cfg = load_config(
        None,
        [
            "mode=curate",
            f"trainer.run_dir={args.out}",
            f"curate.inputs=[{{path: {train}, fields: {{question: problem}}}}]",
            "curate.stages=[annotate, dedup, decontaminate, stratify]",
            "curate.annotate.filters=[{field: verifiable, op: '==', value: true}]",
            "curate.dedup.shingle_size=2",  # short questions: 2-word shingles
            f"curate.decontaminate.benchmarks=[{{path: {evaluation}, name: arith_eval}}]",
        ],
    )
    run(cfg, Console())
    with open(os.path.join(args.out, "report.json"), encoding="utf-8") as fh:
        return json.load(fh)


if __name__ == "__main__":
    main()
