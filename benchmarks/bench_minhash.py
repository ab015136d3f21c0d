"""MinHash signatures: ``rensa`` (what the dedup step uses) vs ``datasketch``'s bulk API, on the
same shingle sets, side by side in one run, plus how close each estimate is to the true Jaccard.

    pip install datasketch   # not a dependency of the package
    python benchmarks/bench_minhash.py --docs 20000 --num-perm 128
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle", type=int, default=5)
    args = ap.parse_args(argv)
    import rensa
    from datasketch import MinHash

    from logics_rl.curate.planted import planted_rows
    from logics_rl.curate.text import jaccard, shingles

    rows = list(planted_rows(args.docs, seed=0))
    sets = [shingles(r["question"], args.shingle) or {""} for r in rows]
    t = time.perf_counter()
    sig_r = np.asarray(
        rensa.RMinHash.digest_matrix_from_token_sets(sets, args.num_perm, 1).to_rows(), np.uint32
    )
    t_r = time.perf_counter() - t
    t = time.perf_counter()
    sig_d = MinHash.bulk([[s.encode() for s in x] for x in sets], num_perm=args.num_perm)
    t_d = time.perf_counter() - t
    # estimate error on the planted near copies (their true Jaccard is known)
    by_uid = {r["uid"]: i for i, r in enumerate(rows)}
    err_r, err_d = [], []
    for i, r in enumerate(rows):
        if r["kind"] == "near":
            j = by_uid[r["cluster"]]
            true = jaccard(sets[i], sets[j])
            err_r.append(abs(float(np.mean(sig_r[i] == sig_r[j])) - true))
            err_d.append(abs(sig_d[i].jaccard(sig_d[j]) - true))
    out = {
        "docs": args.docs,
        "rensa_docs_per_s": args.docs / t_r,
        "datasketch_docs_per_s": args.docs / t_d,
        "speedup": t_d / t_r,
        "rensa_mean_abs_error": float(np.mean(err_r)),
        "datasketch_mean_abs_error": float(np.mean(err_d)),
    }
    print(
        f"{args.docs} docs, {args.num_perm} permutations: rensa {out['rensa_docs_per_s']:,.0f} "
        f"docs/s, datasketch {out['datasketch_docs_per_s']:,.0f} docs/s -> {out['speedup']:.1f}x; "
        f"mean |estimate - true Jaccard| {out['rensa_mean_abs_error']:.3f} vs "
        f"{out['datasketch_mean_abs_error']:.3f}"
    )
    return out


if __name__ == "__main__":
    main()
