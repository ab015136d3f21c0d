"""``length``: remove (or mask) samples outside ``[min_length, max_length]`` response tokens.

``max_length=None`` means no upper bound. A group whose samples are all out of bounds is dropped
(reason ``all_out_of_bounds``). Sample reasons: ``too_short`` / ``too_long``.
"""

from __future__ import annotations

from typing import Literal

from logics_rl.filters.base import FILTERS, FilterDecision, Group, decide


@FILTERS.register("length")
def length(
    group: Group,
    *,
    min_length: int = 0,
    max_length: int | None = None,
    mode: Literal["drop", "mask"] = "drop",
) -> FilterDecision:
    if mode not in ("drop", "mask"):
        raise ValueError(f"length: mode={mode!r} is not 'drop' or 'mask'")
    if max_length is not None and max_length < min_length:
        raise ValueError(f"length: max_length ({max_length}) < min_length ({min_length})")
    short = [n < min_length for n in group.response_lengths]
    long = [max_length is not None and n > max_length for n in group.response_lengths]
    bad = [s or t for s, t in zip(short, long)]
    why = "too_short" if not any(long) else "too_long" if not any(short) else "out_of_bounds"
    return decide(bad, mode, why, group_reason="all_out_of_bounds")
