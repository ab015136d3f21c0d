"""Reward scoring throughput and the import cost of the reward plugin kit.

    python benchmarks/bench_rewards.py [--n 4096] [--group 8] [--workers 2] [--imports 7]

Scores ``--n`` typical responses, ``--group`` per prompt (a chain of thought of 300-2,500 characters ending in a boxed
answer: integers, fractions, roots, decimals, intervals, polynomials; about half correct, often
in another but equivalent form; a few without a box) with the ``math_verify`` reward:

  * in the process pool (``--workers`` processes, 16 samples per chunk), warm and from cold;
  * in the pool with one sample per chunk, to show what chunking saves;
  * in-process on the main thread (``num_workers=0``): one process, no process boundary.

Each run gets a fresh batch (different prompts), so no run reuses another's cached golds.

Then the dense ``repetition`` reward on one response of 25k-200k tokens (the second half
repeating the first): the time should double with the length (linear, not quadratic).

Then the import time of ``logics_rl.rewards`` in a fresh interpreter (median of ``--imports``).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FILLER = [
    "Let me think about this step by step.",
    "First, I rewrite the expression so the terms line up.",
    "Substituting back, the two sides agree, so this step holds.",
    "Wait, I should double-check the sign of the second term.",
    "Expanding $(a+b)^2 = a^2 + 2ab + b^2$ gives the middle coefficient.",
    "So the quantity we want is the ratio of the two areas.",
    "Checking with a small case: for $n = 2$ the formula gives 5, which matches.",
    "Hmm, that contradicts the earlier estimate of 12, so let me recount.",
]


def answer_pair(rng: random.Random) -> tuple[str, str, str]:
    """(gold, an equivalent form, a wrong answer)."""
    kind = rng.randrange(6)
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    if kind == 0:
        return str(a * b), str(a * b), str(a * b + rng.choice([-1, 1, 10]))
    if kind == 1:
        return (
            rf"\frac{{{a}}}{{{b + a}}}",
            rf"\dfrac{{{2 * a}}}{{{2 * (b + a)}}}",
            rf"\frac{{{b + a}}}{{{a}}}",
        )
    if kind == 2:
        return rf"{a}\sqrt{{2}}", rf"\sqrt{{{2 * a * a}}}", rf"{a}\sqrt{{3}}"
    if kind == 3:
        return f"{a / 4:g}", rf"\frac{{{a}}}{{4}}", f"{a / 5:g}"
    if kind == 4:
        return f"({a}, {a + b}]", f"({a},{a + b}]", f"[{a}, {a + b})"
    return f"x^2 + {2 * a}x + {a * a}", f"(x+{a})^2", f"(x+{a + 1})^2"


def make_batch(n: int, group: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` responses, ``group`` per prompt (the gold repeats within a group, as in GRPO)."""
    rng = random.Random(seed)
    responses, golds = [], []
    while len(responses) < n:
        gold, same, wrong = answer_pair(rng)
        for _ in range(min(group, n - len(responses))):
            cot = " ".join(rng.choice(FILLER) for _ in range(rng.randint(6, 45)))
            roll = rng.random()
            if roll < 0.05:
                final = f" I am not sure, maybe {rng.randint(1, 99)}."
            elif roll < 0.5:
                final = rf" Therefore the answer is $\boxed{{{rng.choice([gold, same])}}}$."
            else:
                final = rf" Therefore the answer is $\boxed{{{wrong}}}$."
            responses.append(cot + final)
            golds.append(gold)
    return responses, golds


def import_time(repeats: int) -> list[float]:
    code = "import time; t = time.perf_counter(); import logics_rl.rewards; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--group", type=int, default=8, help="responses per prompt")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--imports", type=int, default=7)
    args = ap.parse_args()

    from logics_rl.rewards import RewardInput, math_verify, shutdown_pools

    seeds = iter(range(100))

    def fresh_batch() -> RewardInput:
        # A new batch per run: workers cache parsed golds, and a repeated batch would hit them.
        responses, golds = make_batch(args.n, args.group, next(seeds))
        return RewardInput.build(responses, ground_truths=golds)

    chars = statistics.mean(len(r) for r in fresh_batch().responses)
    print(
        f"machine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}"
    )
    print(
        f"batch: {args.n} responses ({args.group} per prompt), mean {chars:.0f} characters; pool of {args.workers} processes\n"
    )

    def run(label: str, **params) -> None:
        batch = fresh_batch()
        t0 = time.perf_counter()
        res = math_verify(batch, timeout_s=10.0, **params)
        dt = time.perf_counter() - t0
        bad = {k: v for k, v in res.counters.items() if v}
        print(
            f"{label:<44} {dt:7.2f} s  {args.n / dt:8.0f} responses/s  accuracy {statistics.mean(res.scores):.3f}  {bad or ''}"
        )

    shutdown_pools()
    run("pool, chunk 16, cold (includes start-up)", num_workers=args.workers)
    run("pool, chunk 16, warm", num_workers=args.workers)
    run("pool, chunk 1, warm", num_workers=args.workers, chunk_size=1)
    math_verify(
        RewardInput.build(["1"], ground_truths=["1"]), num_workers=0
    )  # import SymPy here first
    run("in-process, main thread (num_workers=0)", num_workers=0)
    shutdown_pools()

    from logics_rl.rewards import repetition

    print()
    previous = None
    for length in (25_000, 50_000, 100_000, 200_000):
        rng = random.Random(length)
        half = [rng.randrange(50_000) for _ in range(length // 2)]
        batch = RewardInput.build(["..."], response_token_ids=[half + half])
        t0 = time.perf_counter()
        ratio = repetition(batch).components["repetition_ratio"][0]
        dt = time.perf_counter() - t0
        growth = f"  x{dt / previous:.2f} vs half the length" if previous else ""
        print(f"repetition, {length:>7} tokens: {dt * 1000:7.1f} ms  ratio {ratio:.3f}{growth}")
        previous = dt

    times = import_time(args.imports)
    print(
        f"\nimport logics_rl.rewards (fresh interpreter, median of {len(times)}): {statistics.median(times) * 1000:.0f} ms  (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})"
    )


if __name__ == "__main__":
    main()
