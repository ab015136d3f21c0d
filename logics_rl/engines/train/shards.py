"""A train engine's sharded state on disk as plain data: safetensors files and JSON.

Nothing in a checkpoint may run code when it is read, so this replaces
``torch.distributed.checkpoint`` (whose ``.metadata`` file is a pickle, and whose tensor records
are ``torch.save`` archives). Layout of ``<checkpoint>/shards/``:

- ``rank<r>.safetensors``: the tensors rank ``r`` holds. A DTensor (or a ``Chunk``: a part of
  a larger tensor an engine describes itself) contributes its local part; the header's
  ``__metadata__`` maps every key to the tensor's global shape and the part's offset in it. A
  plain tensor (replicated, e.g. Adam's ``step``) is written by rank 0 only.
- ``index.json`` (rank 0): the state's tree: dicts, lists, tuples, numbers, strings, with
  ``{"__tensor__": key}`` where a tensor was; the world size; the files.

Reading needs no process group and any world size: every target tensor (a DTensor's local shard,
or a full tensor) is filled from the saved chunks that overlap it, read lazily from the
safetensors files (``safe_open`` slices), and a target not covered exactly is an error. The
files are written by this module's own streaming writer (tensor by tensor, no second copy of the
state in memory), so a full disk surfaces as ``OSError: [Errno 28] No space left on device``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from logics_rl.errors import CheckpointError

SHARDS = "shards"
INDEX = "index.json"
FORMAT = "logics_rl.shards/1"
_CHUNKS_KEY = "logics_rl.chunks"

_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


@dataclass
class Chunk:
    """``data`` is the block ``[offset, offset + data.shape)`` of a tensor of ``shape``;
    ``owner``: this rank writes it (one owner per block). A chunk without data stands for a
    tensor that other ranks write, so that rank 0's index names it."""

    data: torch.Tensor | None
    shape: list[int]
    offset: list[int]
    owner: bool = True


def rank_file(rank: int) -> str:
    return f"rank{rank:05d}.safetensors"


# --------------------------------------------------------------------------- the state's tree
def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """The JSON tree of ``obj``; tensors go to ``tensors`` under their path."""
    if isinstance(obj, (torch.Tensor, Chunk)):
        tensors[path] = obj
        return {"__tensor__": path}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"state key {k!r} at {path or '/'} is not a string")
            out[k] = _flatten(v, f"{path}/{k}", tensors)
        return out
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"state value at {path} is a {type(obj).__name__}, not data")


def _local_chunk(t: torch.Tensor | Chunk) -> tuple[torch.Tensor, list[int], list[int], bool]:
    """(local data, global shape, offset of the local data, whether this rank writes it)."""
    from torch.distributed.tensor import DTensor, Replicate

    if isinstance(t, Chunk):
        return t.data, list(t.shape), list(t.offset), t.owner and t.data is not None

    if isinstance(t, DTensor):
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        _, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
        coord = t.device_mesh.get_coordinate() or []
        owner = all(
            c == 0 for c, p in zip(coord, t.placements, strict=False) if isinstance(p, Replicate)
        )
        return t.to_local(), list(t.shape), list(offset), owner
    return t, list(t.shape), [0] * t.dim(), True


def save_state(state: dict[str, Any], directory: str, rank: int) -> None:
    """Write this rank's part of ``state`` under ``directory`` (every rank calls it; rank 0 also
    writes the index). The caller synchronises the ranks afterwards."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, "", tensors)
    os.makedirs(directory, exist_ok=True)
    pieces: dict[str, torch.Tensor] = {}
    chunks: dict[str, dict[str, list[int]]] = {}
    for key, t in tensors.items():
        local, shape, offset, owner = _local_chunk(t)
        if not owner or (rank != 0 and not _is_part(t)):
            continue
        pieces[key] = local
        chunks[key] = {"shape": shape, "offset": offset}
    _write_safetensors(
        os.path.join(directory, rank_file(rank)), pieces, {_CHUNKS_KEY: json.dumps(chunks)}
    )
    if rank == 0:
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        index = {"format": FORMAT, "world_size": world, "tree": tree}
        with open(os.path.join(directory, INDEX), "w", encoding="utf-8") as fh:
            json.dump(index, fh)


def _is_part(t: torch.Tensor | Chunk) -> bool:
    """A part of a larger tensor (written by its owner on any rank)."""
    from torch.distributed.tensor import DTensor

    return isinstance(t, (DTensor, Chunk))


def _write_safetensors(path: str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """The safetensors format, streamed: header, then each tensor's bytes in order."""
    header: dict[str, Any] = {"__metadata__": meta}
    flat: list[torch.Tensor] = []
    pos = 0
    for key, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise TypeError(f"cannot store {key} of dtype {t.dtype}")
        t = t.detach().to("cpu").contiguous().reshape(-1)
        n = t.numel() * t.element_size()
        header[key] = {
            "dtype": _DTYPES[t.dtype],
            "shape": list(tensors[key].shape),
            "data_offsets": [pos, pos + n],
        }
        flat.append(t)
        pos += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for t in flat:
            if t.numel():
                fh.write(memoryview(t.view(torch.uint8).numpy()))
        fh.flush()
        os.fsync(fh.fileno())


# --------------------------------------------------------------------------- reading
class _Chunks:
    """Every saved chunk of every tensor, read from the files' headers (data stays on disk)."""

    def __init__(self, directory: str, world: int):
        from safetensors import safe_open

        self.directory = directory
        self.by_key: dict[str, list[tuple[str, list[int], list[int]]]] = {}
        self.handles: dict[str, Any] = {}
        for r in range(world):
            path = os.path.join(directory, rank_file(r))
            if not os.path.exists(path):
                raise CheckpointError(
                    f"{path}: missing (the index says {world} ranks wrote shards)"
                )
            try:
                fh = safe_open(path, framework="pt", device="cpu")
                table = json.loads((fh.metadata() or {})[_CHUNKS_KEY])
            except Exception as exc:
                raise CheckpointError(f"{path}: not a shard file of this format ({exc})") from None
            self.handles[path] = fh
            for key, c in table.items():
                self.by_key.setdefault(key, []).append((path, c["shape"], c["offset"]))

    def fill(self, key: str, target: torch.Tensor, shape: list[int], offset: list[int]) -> None:
        """Copy the saved region ``offset : offset + target.shape`` of ``key`` into ``target``."""
        found = self.by_key.get(key)
        if not found:
            raise CheckpointError(f"{self.directory}: no saved data for {key}")
        covered = 0
        for path, saved_shape, saved_off in found:
            if list(saved_shape) != list(shape):
                raise CheckpointError(
                    f"{path}: {key} has shape {saved_shape}, the model expects {shape}"
                )
            view = self.handles[path].get_slice(key)
            local_shape = view.get_shape()
            lo = [max(a, b) for a, b in zip(offset, saved_off)]
            hi = [
                min(a + n, b + m)
                for a, n, b, m in zip(offset, target.shape, saved_off, local_shape)
            ]
            if any(h <= low for low, h in zip(lo, hi)) and target.dim():
                continue
            src = tuple(slice(low - b, h - b) for low, h, b in zip(lo, hi, saved_off))
            dst = tuple(slice(low - a, h - a) for low, h, a in zip(lo, hi, offset))
            piece = view[src] if target.dim() else self.handles[path].get_tensor(key)
            target[dst].copy_(piece.reshape(target[dst].shape))
            covered += math.prod(h - low for low, h in zip(lo, hi))
        if covered != target.numel():
            raise CheckpointError(
                f"{self.directory}: {key} covers {covered} of the {target.numel()} values asked"
            )


def load_state(template: dict[str, Any], directory: str) -> dict[str, Any]:
    """The saved state in ``template``'s shape: each template tensor (a DTensor's local shard or
    a full tensor) filled in place; numbers, strings and the rest from the index."""
    path = os.path.join(directory, INDEX)
    try:
        with open(path, encoding="utf-8") as fh:
            index = json.load(fh)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} index")
    chunks = _Chunks(directory, int(index["world_size"]))
    return _restore(template, index["tree"], chunks, "")


def _restore(template: Any, saved: Any, chunks: _Chunks, path: str) -> Any:
    if isinstance(template, (torch.Tensor, Chunk)):
        if not (isinstance(saved, dict) and saved.get("__tensor__") == path):
            raise CheckpointError(f"{chunks.directory}: {path} is not a tensor in the checkpoint")
        local, shape, offset, _ = _local_chunk(template)
        with torch.no_grad():
            chunks.fill(path, local, shape, offset)
        return template
    if isinstance(template, dict):
        if not isinstance(saved, dict) or "__tensor__" in saved or "__tuple__" in saved:
            raise CheckpointError(f"{chunks.directory}: {path or '/'} has another structure")
        missing = set(template) - set(saved)
        if missing:
            raise CheckpointError(f"{chunks.directory}: {path or '/'} lacks {sorted(missing)[:5]}")
        return {k: _restore(template[k], saved[k], chunks, f"{path}/{k}") for k in template}
    if isinstance(template, (list, tuple)):
        items = saved["__tuple__"] if isinstance(saved, dict) and "__tuple__" in saved else saved
        if not isinstance(items, list) or len(items) != len(template):
            raise CheckpointError(f"{chunks.directory}: {path} has another length")
        out = [
            _restore(t, s, chunks, f"{path}/{i}") for i, (t, s) in enumerate(zip(template, items))
        ]
        return tuple(out) if isinstance(template, tuple) else out
    return _plain(saved)


def _plain(saved: Any) -> Any:
    """A saved non-tensor value (tuples restored)."""
    if isinstance(saved, dict):
        if "__tuple__" in saved:
            return tuple(_plain(v) for v in saved["__tuple__"])
        return {k: _plain(v) for k, v in saved.items()}
    if isinstance(saved, list):
        return [_plain(v) for v in saved]
    return saved
