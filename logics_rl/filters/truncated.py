"""``truncated``: remove or mask samples that hit the length limit (finish reason "length").

Logics-STEM drops over-long responses in dynamic sampling; DAPO's "overlong filtering" instead
keeps them in the batch and zeroes their loss, so a truncated (unjudgeable) answer teaches nothing
either way. ``mode="drop"`` removes them (a group left empty is dropped), ``mode="mask"`` keeps them
with their loss masked. Sample reason: ``truncated``.
"""

from __future__ import annotations

from typing import Literal

from logics_rl.filters.base import FILTERS, FilterDecision, Group, decide


@FILTERS.register("truncated")
def truncated(group: Group, *, mode: Literal["drop", "mask"] = "drop") -> FilterDecision:
    if mode not in ("drop", "mask"):
        raise ValueError(f"truncated: mode={mode!r} is not 'drop' or 'mask'")
    return decide([bool(t) for t in group.truncated], mode, "truncated")
