"""The streaming row reader every loader uses: jsonl, json (a list), parquet, a directory of
parquet / jsonl shards (as ``mode: curate`` writes them), and HF ``datasets`` saved with
``save_to_disk``, one row at a time with its file and row number, so an
error names both (1-based) and nothing needs the whole file in memory.

    for row in iter_files(["train.jsonl", "more.parquet"]):
        use(row.data)                                  # errors: DataError(f"{row.where}: ...")
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from logics_rl.errors import LogicsRLError


class DataError(LogicsRLError, ValueError):
    """A data file or row that cannot be used; the message names the file and row."""


@dataclass(frozen=True)
class Row:
    file: str
    number: int  # 1-based: the line of a jsonl file, the position in the others
    data: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.file} row {self.number}"


_PARQUET_BATCH_ROWS = 1024


def iter_rows(path: str) -> Iterator[Row]:
    """The rows of ``path``, one at a time."""
    if not os.path.exists(path):
        raise DataError(f"data file {path!r} does not exist")
    if os.path.isdir(path):
        shards = _shards(path)
        if shards is None:
            yield from _iter_hf_dataset(path)
        else:
            for shard in shards:
                yield from iter_rows(shard)
        return
    ext = os.path.splitext(path)[1].lower()
    readers = {".jsonl": _iter_jsonl, ".ndjson": _iter_jsonl, ".json": _iter_json_list}
    if ext == ".parquet":
        yield from _iter_parquet(path)
    elif ext in readers:
        yield from readers[ext](path)
    else:
        raise DataError(
            f"{path}: unsupported data file type {ext!r} (use .jsonl, .json, .parquet or a "
            "datasets directory)"
        )


_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_SHARD_EXTS = (".parquet", ".jsonl", ".ndjson")


def _shards(path: str) -> list[str] | None:
    """The data files of a directory of shards (``*.parquet`` / ``*.jsonl``, as the data engine
    writes them), sorted; None for a ``datasets`` directory."""
    names = os.listdir(path)
    if any(m in names for m in _HF_MARKERS):
        return None
    shards = sorted(os.path.join(path, n) for n in names if n.lower().endswith(_SHARD_EXTS))
    if not shards:
        return None  # not shards either: the datasets reader names what is wrong
    return shards


def iter_files(paths: Iterable[str]) -> Iterator[Row]:
    """The rows of several files, file after file."""
    for path in paths:
        yield from iter_rows(path)


def _iter_jsonl(path: str) -> Iterator[Row]:
    with open(path, "rb") as fh:  # decoded per line, so a bad byte names its row
        for i, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path} row {i}: not valid UTF-8 (byte {exc.start + 1} of the line: "
                    f"{raw[exc.start : exc.start + 1]!r})"
                ) from None
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path} row {i}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            yield _checked(Row(path, i, data))


def _iter_json_list(path: str) -> Iterator[Row]:
    """A JSON list is parsed whole (JSON has no row boundaries to stream by); use jsonl or
    parquet for large sets."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid UTF-8 (byte {exc.start + 1} of the file)") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: a .json data file must hold a list of rows")
    for i, item in enumerate(data, start=1):
        yield _checked(Row(path, i, item))


def _iter_parquet(path: str) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    number = 0
    for batch in reader.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
        for data in batch.to_pylist():
            number += 1
            yield Row(path, number, data)


def _iter_hf_dataset(path: str) -> Iterator[Row]:
    from datasets import load_from_disk

    try:
        ds = load_from_disk(path)  # memory-mapped Arrow: iterating reads row by row
    except Exception as exc:
        raise DataError(
            f"{path}: not a datasets directory saved with save_to_disk ({exc})"
        ) from None
    if hasattr(ds, "keys") and not hasattr(ds, "column_names"):  # a DatasetDict
        if "train" not in ds:
            raise DataError(f"{path}: a DatasetDict needs a 'train' split, has {list(ds.keys())}")
        ds = ds["train"]
    for i, data in enumerate(ds, start=1):
        yield Row(path, i, data)


T = TypeVar("T")


def load_all(
    files: list[str],
    parse: Callable[[Row], T],
    length: Callable[[T], int],
    max_length: int,
    what: str,
) -> tuple[list[T], dict[str, int]]:
    """``parse`` every row of ``files`` (it raises ``DataError`` naming ``row.where``); items
    longer than ``max_length`` tokens are dropped and counted, never silently. Returns the items
    and the counts ``{"rows", "too_long"}``; no usable item at all is an error."""
    items: list[T] = []
    counts = {"rows": 0, "too_long": 0}
    for row in iter_files(files):
        counts["rows"] += 1
        item = parse(row)
        if length(item) > max_length:
            counts["too_long"] += 1
            continue
        items.append(item)
    if not items:
        raise DataError(
            f"no usable {what} in {files} ({counts['too_long']} longer than {max_length} tokens)"
        )
    return items, counts


def _checked(row: Row) -> Row:
    if not isinstance(row.data, dict):
        raise DataError(f"{row.where}: expected a JSON object, got {type(row.data).__name__}")
    return row


def write_jsonl(path: str, rows: list[dict[str, Any]]) -> None:
    """Write rows atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def check_messages(msgs: Any, where: str) -> list[dict[str, str]]:
    """A non-empty list of ``{"role": str, "content": str}``, else a ``DataError`` naming ``where``."""
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for j, m in enumerate(msgs):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise DataError(
                f"{where}: messages[{j}] must be an object with string 'role' and 'content'"
            )
    return msgs
