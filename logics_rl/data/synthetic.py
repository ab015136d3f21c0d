"""Generated verifiable tasks, written as jsonl so they go through the same loaders as real data.

``arithmetic``: multi-digit addition and subtraction with ``\\boxed{}`` answers. Every problem
comes as an RL prompt row (``prompt``, ``ground_truth``, ``data_source``) and as an SFT row whose
assistant turn is a worked column-by-column solution, so a small model can learn the method in
stage one and RL can sharpen it in stage two.

    write_task(cfg.data.synthetic, out_dir)  ->  {"rl_train": ..., "rl_val": ..., "sft_train": ..., "sft_val": ...}
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass

from logics_rl.config.schema import SyntheticDataConfig
from logics_rl.data.files import write_jsonl

INSTRUCTION = "Put the final answer in \\boxed{}."


def _assemble(digits: list[int], carry: int) -> int:
    """The number whose digits (least significant first) and final carry the working wrote."""
    return int("".join(str(d) for d in reversed(digits + ([carry] if carry else []))))


def worked_addition(a: int, b: int, slip: tuple[int, int] | None = None) -> str:
    """Column addition, least significant digit first, with carries.

    ``slip = (column, delta)``: that column's sum is written off by ``delta`` and the working
    carries on from the wrong value, so the boxed answer agrees with the (wrong) working.
    """
    da, db = str(a)[::-1], str(b)[::-1]
    steps, digits, carry = [], [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        if slip is not None and slip[0] == i:
            s = s + slip[1] if s + slip[1] >= 0 else s - slip[1]
        expr = f"{x}+{y}" + (f"+{carry}" if carry else "")
        carry = s // 10
        digits.append(s % 10)
        steps.append(f"{expr}={s}" + (", carry 1" if carry else ""))
    if carry:
        steps.append("carry 1")
    return "; ".join(steps) + f". \\boxed{{{_assemble(digits, carry)}}}"


def worked_subtraction(a: int, b: int, slip: tuple[int, int] | None = None) -> str:
    """Column subtraction of b <= a, least significant digit first, with borrows.

    ``slip = (column, delta)``: that column's difference is written off by ``delta`` (kept a
    digit), and the boxed answer follows the working.
    """
    da, db = str(a)[::-1], str(b)[::-1]
    steps, digits, borrow = [], [], 0
    for i in range(len(da)):
        x = int(da[i]) - borrow
        y = int(db[i]) if i < len(db) else 0
        borrow = 1 if x < y else 0
        x_eff = x + 10 * borrow
        d = x_eff - y
        if slip is not None and slip[0] == i:
            d = d + slip[1] if 0 <= d + slip[1] <= 9 else d - slip[1]
        digits.append(d)
        steps.append(f"{x_eff}-{y}={d}" + (", borrow 1" if borrow else ""))
    return "; ".join(steps) + f". \\boxed{{{_assemble(digits, 0)}}}"


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str
    a: int
    b: int
    op: str  # "add" | "sub"
    source: str  # e.g. "add_2d"

    def worked(self, slip: tuple[int, int] | None = None) -> str:
        fn = worked_addition if self.op == "add" else worked_subtraction
        return fn(self.a, self.b, slip)

    @property
    def columns(self) -> int:
        return len(str(max(self.a, self.b)))


def arithmetic_problem(rng: random.Random, min_digits: int, max_digits: int) -> Problem:
    digits = rng.randint(min_digits, max_digits)
    lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    if rng.random() < 0.5:
        prompt, answer, op = f"Compute {a}+{b}.", str(a + b), "add"
    else:
        a, b = max(a, b), min(a, b)
        prompt, answer, op = f"Compute {a}-{b}.", str(a - b), "sub"
    return Problem(f"{prompt} {INSTRUCTION}", answer, a, b, op, f"{op}_{digits}d")


def _distinct_problems(cfg: SyntheticDataConfig, rng: random.Random) -> list[Problem]:
    """``train_size + val_size`` problems with distinct prompts, in draw order."""
    seen: set[str] = set()
    rows: list[Problem] = []
    want = cfg.train_size + cfg.val_size
    attempts = 0
    while len(rows) < want:
        attempts += 1
        if attempts > 50 * want:
            raise ValueError(
                f"cannot draw {want} distinct problems with {cfg.min_digits}-{cfg.max_digits} digits"
            )
        p = arithmetic_problem(rng, cfg.min_digits, cfg.max_digits)
        if p.prompt not in seen:
            seen.add(p.prompt)
            rows.append(p)
    return rows


def _slip(p: Problem, slips: random.Random, rate: float) -> tuple[int, int] | None:
    """With probability ``rate``, a teacher slip for ``p``: (column, +-1)."""
    if slips.random() >= rate:
        return None
    return slips.randrange(p.columns), slips.choice((-1, 1))


def borrows(p: Problem) -> bool:
    """A subtraction with at least one borrow (column by column, least significant first)."""
    if p.op != "sub":
        return False
    da, db = str(p.a)[::-1], str(p.b)[::-1]
    borrow = 0
    for i in range(len(da)):
        borrow = 1 if int(da[i]) - borrow < (int(db[i]) if i < len(db) else 0) else 0
        if borrow:
            return True
    return False


def _rl_row(p: Problem) -> dict:
    return {"prompt": p.prompt, "ground_truth": p.answer, "data_source": p.source}


def _sft_row(p: Problem, slip: tuple[int, int] | None = None) -> dict:
    """A chat row whose assistant turn is the worked solution (with ``slip``, a flawed one)."""
    return {
        "messages": [
            {"role": "user", "content": p.prompt},
            {"role": "assistant", "content": p.worked(slip)},
        ],
        "data_source": p.source,
    }


def write_task(cfg: SyntheticDataConfig, out_dir: str) -> dict[str, str]:
    """Write train / val files for RL and SFT; the val problems never appear in train.

    ``cfg.teacher_error_rate`` of the SFT training solutions carry one arithmetic slip (a column
    off by one, the answer following the working), like distilled chains of thought from an
    imperfect teacher: imitation learns the slips, a verifiable reward can remove them. RL rows
    always hold the true answer; validation solutions are always clean.
    """
    if cfg.task != "arithmetic":
        raise ValueError(f"unknown synthetic task {cfg.task!r}; available: arithmetic")
    if not 0.0 <= cfg.teacher_error_rate <= 1.0:
        raise ValueError(f"teacher_error_rate must be in [0, 1], got {cfg.teacher_error_rate}")
    if not 0.0 <= cfg.sft_borrow_keep <= 1.0:
        raise ValueError(f"sft_borrow_keep must be in [0, 1], got {cfg.sft_borrow_keep}")
    rng = random.Random(cfg.seed)
    rows = _distinct_problems(cfg, rng)
    # Draws without repeats exhaust the small (1-digit) problems early: shuffle before splitting
    # so that validation and training follow the same distribution.
    rng.shuffle(rows)
    val, train = rows[: cfg.val_size], rows[cfg.val_size :]
    slips = random.Random(cfg.seed + 1)  # its own stream: the problems do not depend on the rate
    names = ("rl_train", "rl_val", "sft_train", "sft_val")
    paths = {name: os.path.join(out_dir, f"{name}.jsonl") for name in names}
    sft_train = train
    if cfg.sft_borrow_keep < 1.0:  # a weakness: few worked borrowing subtractions in stage one
        keep = random.Random(cfg.seed + 2)
        sft_train = [p for p in train if not borrows(p) or keep.random() < cfg.sft_borrow_keep]
        train, val, sft_train = (
            [dataclasses.replace(p, source=f"{p.source}_borrow") if borrows(p) else p for p in ps]
            for ps in (train, val, sft_train)
        )
    write_jsonl(paths["rl_train"], [_rl_row(p) for p in train])
    write_jsonl(paths["rl_val"], [_rl_row(p) for p in val])
    rate = cfg.teacher_error_rate
    write_jsonl(paths["sft_train"], [_sft_row(p, _slip(p, slips, rate)) for p in sft_train])
    write_jsonl(paths["sft_val"], [_sft_row(p) for p in val])
    return paths
