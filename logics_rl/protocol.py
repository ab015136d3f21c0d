"""``Batch``: the one container that travels between the controller and the workers.

A batch holds
- ``tensors``: a ``TensorDict`` whose entries share the first (batch) dimension,
- ``non_tensors``: numpy object arrays of the same length (prompts, ground truths, data sources),
- ``meta``: a dict of settings for the whole batch (the sampling temperature, ...).

Column names and the typed views that check them at stage boundaries live in ``batches.py``.

Rows are samples. Every operation keeps tensors and non-tensor columns aligned row by row.

    b = Batch.from_dict({"input_ids": ids_BT}, {"prompt": prompts}, meta={"temperature": 1.0})
    b8 = b.repeat(8)                 # 8 samples per prompt, interleaved: p0 p0 ... p1 p1 ...
    parts = b8.chunk(2)              # one part per data-parallel rank
    whole = Batch.concat(parts)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict


def _as_object_array(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
        return values
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return arr


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object)))
    return bool(a == b)


@dataclass
class Batch:
    """Tensors, non-tensor columns and meta info with one row per sample."""

    tensors: TensorDict
    non_tensors: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        n = self._tensor_len()
        for key, col in list(self.non_tensors.items()):
            col = _as_object_array(col)
            self.non_tensors[key] = col
            if n is None:
                n = len(col)
            elif len(col) != n:
                raise ValueError(
                    f"non-tensor column {key!r} has {len(col)} rows, expected {n} (batch size)"
                )
        if self.tensors.batch_size == torch.Size([]) and n is not None:
            self.tensors = TensorDict({}, batch_size=[n])

    def _tensor_len(self) -> int | None:
        if len(self.tensors.batch_size) == 0:
            return None
        return int(self.tensors.batch_size[0])

    @classmethod
    def from_dict(
        cls,
        tensors: Mapping[str, torch.Tensor] | None = None,
        non_tensors: Mapping[str, Sequence[Any]] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Batch:
        """Build a batch; every tensor and column must have the same first dimension."""
        tensors = dict(tensors or {})
        sizes = {k: int(v.shape[0]) for k, v in tensors.items() if v.dim() > 0}
        for k, v in tensors.items():
            if v.dim() == 0:
                raise ValueError(f"tensor {k!r} is a scalar; batch tensors need a batch dimension")
        if len(set(sizes.values())) > 1:
            raise ValueError(f"tensors disagree on the batch size: {sizes}")
        n = next(iter(sizes.values()), None)
        if n is None and non_tensors:
            n = len(next(iter(non_tensors.values())))
        td = TensorDict(tensors, batch_size=[n] if n is not None else [])
        cols = {k: _as_object_array(v) for k, v in (non_tensors or {}).items()}
        return cls(td, cols, dict(meta or {}))

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        n = self._tensor_len()
        if n is not None:
            return n
        if self.non_tensors:
            return len(next(iter(self.non_tensors.values())))
        return 0

    def columns(self) -> list[str]:
        """Names of every column, tensor and non-tensor."""
        return list(self.tensors.keys()) + list(self.non_tensors.keys())

    def get(self, key: str, default: Any = None) -> Any:
        """The column ``key`` (tensor or non-tensor), or ``default`` when absent."""
        return self[key] if key in self else default  # noqa: SIM401

    def __contains__(self, key: str) -> bool:
        return key in self.tensors or key in self.non_tensors

    def __getitem__(self, item: Any) -> Any:
        """``batch["key"]`` returns a column; an int, slice, index list or mask returns rows."""
        if isinstance(item, str):
            if item in self.tensors:
                return self.tensors[item]
            if item in self.non_tensors:
                return self.non_tensors[item]
            raise KeyError(f"batch has no key {item!r}; columns: {self.columns()}")
        return self._rows(self._row_index(item))

    def _row_index(self, item: Any) -> np.ndarray:
        """Row positions (int64) for an int, slice, index sequence, index tensor or bool mask."""
        if isinstance(item, int):
            item = slice(item, item + 1 if item != -1 else None)
        if isinstance(item, slice):
            return np.arange(len(self))[item]
        if isinstance(item, torch.Tensor):
            item = item.cpu().numpy()
        if isinstance(item, np.ndarray) and item.dtype == bool:
            return np.nonzero(item)[0]
        if isinstance(item, list | tuple | np.ndarray):
            return np.asarray(item, dtype=np.int64)
        raise TypeError(f"cannot index a Batch with {type(item).__name__}")

    def _rows(self, idx: np.ndarray) -> Batch:
        if self._tensor_len() is None:
            td = TensorDict({}, batch_size=[len(idx)])
        else:
            td = self.tensors[torch.as_tensor(idx, dtype=torch.long)]
        cols = {k: v[idx] for k, v in self.non_tensors.items()}
        return Batch(td, cols, dict(self.meta))

    def __setitem__(self, key: str, value: Any) -> None:
        """Add or replace a column; its first dimension must equal the batch size."""
        n = len(self)
        if isinstance(value, torch.Tensor):
            if value.dim() == 0 or value.shape[0] != n:
                raise ValueError(f"tensor {key!r} has shape {tuple(value.shape)}; batch size {n}")
            if self._tensor_len() is None:
                self.tensors = TensorDict({}, batch_size=[n])
            self.tensors[key] = value
        else:
            col = _as_object_array(value)
            if len(col) != n:
                raise ValueError(f"column {key!r} has {len(col)} rows; batch size {n}")
            self.non_tensors[key] = col

    def __repr__(self) -> str:
        tens = {
            k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in self.tensors.items()
        }
        return f"Batch(len={len(self)}, tensors={tens}, non_tensors={list(self.non_tensors)}, meta={list(self.meta)})"

    # ------------------------------------------------------------------ column operations
    def with_columns(
        self, columns: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None
    ) -> Batch:
        """A new batch with ``columns`` added or replaced and ``meta`` merged in; ``self`` is
        unchanged (stage helpers return new batches instead of writing into their inputs)."""
        out = Batch(self.tensors.clone(recurse=False), dict(self.non_tensors), dict(self.meta))
        for key, value in (columns or {}).items():
            out[key] = value
        out.meta.update(meta or {})
        return out

    def union(self, other: Batch) -> Batch:
        """Merge columns and meta of two batches of equal length; shared keys must agree."""
        if len(self) != len(other):
            raise ValueError(f"cannot union batches of length {len(self)} and {len(other)}")
        td = self.tensors.clone(recurse=False)
        if self._tensor_len() is None:
            td = TensorDict({}, batch_size=[len(self)])
        for k, v in other.tensors.items():
            if k in td and not torch.equal(td[k], v):
                raise ValueError(f"union: tensor {k!r} differs between the two batches")
            td[k] = v
        cols = dict(self.non_tensors)
        for k, v in other.non_tensors.items():
            if k in cols and not _values_equal(cols[k], v):
                raise ValueError(f"union: non-tensor column {k!r} differs between the two batches")
            cols[k] = v
        meta = dict(self.meta)
        for k, v in other.meta.items():
            if k in meta and not _values_equal(meta[k], v):
                raise ValueError(f"union: meta {k!r} differs ({meta[k]!r} vs {v!r})")
            meta[k] = v
        return Batch(td, cols, meta)

    # ------------------------------------------------------------------ row operations
    def repeat(self, n: int) -> Batch:
        """Each row ``n`` times, interleaved (a a b b): n samples per prompt, side by side."""
        if n < 1:
            raise ValueError(f"repeat count must be >= 1, got {n}")
        return self[np.repeat(np.arange(len(self)), n)]

    def chunk(self, n: int) -> list[Batch]:
        """``n`` equal parts in order; the length must be divisible by ``n``."""
        if n < 1 or len(self) % n:
            raise ValueError(f"cannot chunk a batch of {len(self)} rows into {n} equal parts")
        size = len(self) // n
        return [self[i * size : (i + 1) * size] for i in range(n)]

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """Rows of all batches in order; columns must match and meta must agree."""
        if not batches:
            raise ValueError("concat needs at least one batch")
        first = batches[0]
        tkeys = set(first.tensors.keys())
        ckeys = set(first.non_tensors)
        for i, b in enumerate(batches[1:], start=1):
            if set(b.tensors.keys()) != tkeys or set(b.non_tensors) != ckeys:
                raise ValueError(
                    f"concat: batch {i} has columns {sorted(b.columns())}, batch 0 has {sorted(first.columns())}"
                )
            for k, v in b.meta.items():
                if k in first.meta and not _values_equal(first.meta[k], v):
                    raise ValueError(f"concat: meta {k!r} differs between batch 0 and batch {i}")
        n = sum(len(b) for b in batches)
        if tkeys:
            td = torch.cat([b.tensors for b in batches], dim=0)
        else:
            td = TensorDict({}, batch_size=[n])
        cols = {k: np.concatenate([b.non_tensors[k] for b in batches]) for k in ckeys}
        meta: dict[str, Any] = {}
        for b in batches:
            for k, v in b.meta.items():
                meta.setdefault(k, v)
        return Batch(td, cols, meta)

    def to(self, device: str | torch.device) -> Batch:
        return Batch(self.tensors.to(device), dict(self.non_tensors), dict(self.meta))
