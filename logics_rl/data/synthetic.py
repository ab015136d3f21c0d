"""Generated verifiable tasks, written as jsonl so they go through the same loaders as real data.

``arithmetic``: multi-digit addition and subtraction with ``\\boxed{}`` answers. Every problem
comes as an RL prompt row (``prompt``, ``ground_truth``, ``data_source``) and as an SFT row whose
assistant turn is a worked column-by-column solution, so a small model can learn the method in
stage one and RL can sharpen it in stage two.

    write_task(cfg.data.synthetic, out_dir)  ->  {"rl_train": ..., "rl_val": ..., "sft_train": ..., "sft_val": ...}
"""

from __future__ import annotations

import os
import random

from logics_rl.config.schema import SyntheticDataConfig
from logics_rl.data.files import write_jsonl

INSTRUCTION = "Put the final answer in \\boxed{}."


def worked_addition(a: int, b: int) -> str:
    """Column addition, least significant digit first, with carries."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        expr = f"{x}+{y}" + (f"+{carry}" if carry else "")
        carry = s // 10
        steps.append(f"{expr}={s}" + (", carry 1" if carry else ""))
    if carry:
        steps.append("carry 1")
    return "; ".join(steps) + f". \\boxed{{{a + b}}}"


def worked_subtraction(a: int, b: int) -> str:
    """Column subtraction of b <= a, least significant digit first, with borrows."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps, borrow = [], 0
    for i in range(len(da)):
        x = int(da[i]) - borrow
        y = int(db[i]) if i < len(db) else 0
        borrow = 1 if x < y else 0
        x_eff = x + 10 * borrow
        steps.append(f"{x_eff}-{y}={x_eff - y}" + (", borrow 1" if borrow else ""))
    return "; ".join(steps) + f". \\boxed{{{a - b}}}"


def arithmetic_problem(
    rng: random.Random, min_digits: int, max_digits: int
) -> tuple[str, str, str, str]:
    """(prompt, answer, worked solution, data source) for one random problem."""
    digits = rng.randint(min_digits, max_digits)
    lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    if rng.random() < 0.5:
        prompt, answer, work, op = f"Compute {a}+{b}.", str(a + b), worked_addition(a, b), "add"
    else:
        a, b = max(a, b), min(a, b)
        prompt, answer, work, op = f"Compute {a}-{b}.", str(a - b), worked_subtraction(a, b), "sub"
    return f"{prompt} {INSTRUCTION}", answer, work, f"{op}_{digits}d"


def write_task(cfg: SyntheticDataConfig, out_dir: str) -> dict[str, str]:
    """Write train / val files for RL and SFT; the val problems never appear in train."""
    if cfg.task != "arithmetic":
        raise ValueError(f"unknown synthetic task {cfg.task!r}; available: arithmetic")
    rng = random.Random(cfg.seed)
    seen: set[str] = set()
    rows: list[tuple[str, str, str, str]] = []
    want = cfg.train_size + cfg.val_size
    attempts = 0
    while len(rows) < want:
        attempts += 1
        if attempts > 50 * want:
            raise ValueError(
                f"cannot draw {want} distinct problems with {cfg.min_digits}-{cfg.max_digits} digits"
            )
        p = arithmetic_problem(rng, cfg.min_digits, cfg.max_digits)
        if p[0] not in seen:
            seen.add(p[0])
            rows.append(p)
    # Draws without repeats exhaust the small (1-digit) problems early: shuffle before splitting
    # so that validation and training follow the same distribution.
    rng.shuffle(rows)
    val, train = rows[: cfg.val_size], rows[cfg.val_size :]

    def rl(items):
        return [{"prompt": p, "ground_truth": a, "data_source": s} for p, a, _, s in items]

    def sft(items):
        return [
            {
                "messages": [{"role": "user", "content": p}, {"role": "assistant", "content": w}],
                "data_source": s,
            }
            for p, _, w, s in items
        ]

    paths = {
        "rl_train": os.path.join(out_dir, "rl_train.jsonl"),
        "rl_val": os.path.join(out_dir, "rl_val.jsonl"),
        "sft_train": os.path.join(out_dir, "sft_train.jsonl"),
        "sft_val": os.path.join(out_dir, "sft_val.jsonl"),
    }
    write_jsonl(paths["rl_train"], rl(train))
    write_jsonl(paths["rl_val"], rl(val))
    write_jsonl(paths["sft_train"], sft(train))
    write_jsonl(paths["sft_val"], sft(val))
    return paths
