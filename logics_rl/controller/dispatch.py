"""``@register(dispatch=...)``: how a group call splits its inputs and collects its outputs.

Modes
- ``ONE_TO_ALL``: every worker gets the same arguments; returns the list of results (rank order).
- ``DP_COMPUTE``: ``Batch`` arguments are split into one part per data-parallel rank (workers of
  one model-parallel group get the same part); other arguments go to every worker. ``Batch``
  results of the collecting ranks are concatenated; other results come back as a list.

Data-parallel padding lives here and nowhere else. A batch that does not divide by the
data-parallel size is padded with copies of its first rows; the method runs on the padded parts
unaware, and the rows it returned for padding are dropped from its output. A method may return
any whole number of rows per input row (``generate_sequences``: n samples per prompt), in input
order. Methods that must not see copies (an update would train on them twice) are registered
with ``pad=False``: an indivisible batch is then an error before anything runs.
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from logics_rl.controller.errors import WorkerError
from logics_rl.errors import LogicsRLError
from logics_rl.protocol import Batch

REGISTER_ATTR = "_logics_rl_dispatch"


class Dispatch(str, Enum):
    ONE_TO_ALL = "one_to_all"
    DP_COMPUTE = "dp_compute"
    ALL_RANKS = "all_ranks"


@dataclass(frozen=True)
class MethodSpec:
    dispatch: Dispatch
    pad: bool = True


def register(dispatch: Dispatch = Dispatch.ONE_TO_ALL, *, pad: bool = True):
    """Mark a ``Worker`` method as a group method.

    An exception inside the method reaches the driver with the worker's rank and traceback: a
    ``LogicsRLError`` as itself (so callers can catch it by type), anything else as a
    ``WorkerError``.
    """

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except (KeyboardInterrupt, SystemExit, WorkerError):
                raise
            except LogicsRLError as exc:
                exc.rank = getattr(self, "rank", -1)
                exc.method = fn.__name__
                exc.worker_traceback = traceback.format_exc()
                raise
            except BaseException as exc:  # noqa: BLE001 - some libraries raise BaseException subclasses
                raise WorkerError(
                    getattr(self, "rank", -1),
                    fn.__name__,
                    f"{type(exc).__name__}: {exc}",
                    traceback.format_exc(),
                ) from None

        setattr(wrapper, REGISTER_ATTR, MethodSpec(Dispatch(dispatch), pad))
        return wrapper

    return deco


def registered_methods(cls: type) -> dict[str, MethodSpec]:
    """Names and specs of every ``@register``-ed method of ``cls`` (including inherited)."""
    out = {}
    for name in dir(cls):
        spec = getattr(getattr(cls, name, None), REGISTER_ATTR, None)
        if isinstance(spec, MethodSpec):
            out[name] = spec
    return out


@dataclass(frozen=True)
class DPSplit:
    """How a batch was cut: rows per part (padding included) and real rows of each part."""

    part_rows: int
    real_rows: tuple[int, ...]

    @property
    def padded(self) -> bool:
        return any(r < self.part_rows for r in self.real_rows)


def split_for_dp(
    batch: Batch, dp_size: int, *, pad: bool, what: str
) -> tuple[list[Batch], DPSplit]:
    """``dp_size`` equal parts of ``batch``, padded at the end with copies of its first rows."""
    n = len(batch)
    if n == 0:
        raise ValueError(f"{what}: got an empty batch")
    extra = (-n) % dp_size
    if extra and not pad:
        raise ValueError(
            f"{what}: {n} rows do not divide over {dp_size} data-parallel ranks, and this call "
            "must not see padding copies (they would count twice)"
        )
    if extra:
        batch = batch[np.concatenate([np.arange(n), np.arange(extra) % n])]
    size = len(batch) // dp_size
    real = tuple(max(0, min(size, n - i * size)) for i in range(dp_size))
    return batch.chunk(dp_size), DPSplit(size, real)


def collect(outputs: list[Any], dispatch: Dispatch, split: DPSplit | None, what: str) -> Any:
    """Combine per-worker outputs (already restricted to collecting ranks, in dp order)."""
    if dispatch == Dispatch.ONE_TO_ALL or not outputs:
        return list(outputs)
    if not all(isinstance(o, Batch) for o in outputs):
        if split is not None and split.padded:
            raise TypeError(f"{what}: a padded {dispatch.name} call must return a Batch")
        return list(outputs)
    if split is None:
        return Batch.concat(outputs)
    parts = []
    for out, real in zip(outputs, split.real_rows):
        per_row, rest = divmod(len(out), split.part_rows)
        if rest:
            raise ValueError(
                f"{what}: returned {len(out)} rows for {split.part_rows} input rows; a DP_COMPUTE "
                "method returns a whole number of rows per input row, in input order"
            )
        parts.append(out[: real * per_row])
    return Batch.concat(parts)
