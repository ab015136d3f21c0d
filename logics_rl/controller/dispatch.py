"""``@register(dispatch=...)``: how a group call splits its inputs and collects its outputs.

Modes
- ``ONE_TO_ALL``: every worker gets the same arguments; returns the list of results (rank order).
- ``ALL_TO_ALL``: every argument is a list with one entry per worker; returns the list of results.
- ``RANK_ZERO``: only rank 0 runs the method; returns its result.
- ``DP_COMPUTE``: ``Batch`` arguments are padded to a multiple of the data-parallel size and
  split, one part per data-parallel rank (workers of one model-parallel group get the same part);
  other arguments go to every worker. ``Batch`` results of the collecting ranks are concatenated
  and the padding stripped; other results come back as a list.
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass
from enum import Enum
from typing import Any

from logics_rl.controller.errors import WorkerError
from logics_rl.protocol import Batch

REGISTER_ATTR = "_logics_rl_dispatch"
PAD_META = "dp_pad_rows"  # meta key: padding rows at the end of a DP_COMPUTE part


class Dispatch(str, Enum):
    ONE_TO_ALL = "one_to_all"
    ALL_TO_ALL = "all_to_all"
    RANK_ZERO = "rank_zero"
    DP_COMPUTE = "dp_compute"


@dataclass(frozen=True)
class MethodSpec:
    dispatch: Dispatch
    blocking: bool


@dataclass
class DeferredResult:
    """Outputs of an earlier non-blocking call, collected inside the worker that receives them.

    Lets a future flow from one group call into the next without a round trip through the driver.
    """

    refs: list[Any]
    dispatch: Dispatch
    pad: int

    def resolve(self) -> Any:
        import ray

        return collect(ray.get(self.refs), self.dispatch, self.pad)


def register(dispatch: Dispatch = Dispatch.ONE_TO_ALL, blocking: bool = True):
    """Mark a ``Worker`` method as a group method.

    The wrapped method resolves ``DeferredResult`` arguments and re-raises any error as a
    ``WorkerError`` that carries the worker's rank and traceback to the driver.
    """

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            args = tuple(a.resolve() if isinstance(a, DeferredResult) else a for a in args)
            kwargs = {
                k: v.resolve() if isinstance(v, DeferredResult) else v for k, v in kwargs.items()
            }
            try:
                return fn(self, *args, **kwargs)
            except (KeyboardInterrupt, SystemExit):
                raise
            except WorkerError:
                raise
            except BaseException as exc:  # noqa: BLE001 - some libraries raise BaseException subclasses
                raise WorkerError(
                    getattr(self, "rank", -1),
                    fn.__name__,
                    f"{type(exc).__name__}: {exc}",
                    traceback.format_exc(),
                ) from None

        setattr(wrapper, REGISTER_ATTR, MethodSpec(Dispatch(dispatch), blocking))
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


def split_for_dp(arg: Batch, dp_size: int) -> tuple[list[Batch], int]:
    """Pad ``arg`` to a multiple of ``dp_size`` and chunk it; marks padding rows in each part."""
    padded, pad = arg.pad_to_multiple(dp_size)
    parts = padded.chunk(dp_size)
    if pad:
        size = len(parts[0])
        first_pad_row = len(arg)
        for i, part in enumerate(parts):
            start = i * size
            part.meta[PAD_META] = max(0, start + size - max(first_pad_row, start))
    return parts, pad


def collect(outputs: list[Any], dispatch: Dispatch, pad: int = 0) -> Any:
    """Combine per-worker outputs (already restricted to collecting ranks, in dp order)."""
    if dispatch == Dispatch.RANK_ZERO:
        return outputs[0]
    if dispatch == Dispatch.DP_COMPUTE and outputs and all(isinstance(o, Batch) for o in outputs):
        for o in outputs:
            o.meta.pop(PAD_META, None)
        return Batch.concat(outputs).unpad(pad)
    return list(outputs)
