"""Reading row files: jsonl, json (a list), parquet, and HF ``datasets`` saved with
``save_to_disk``. Errors name the file and the row (1-based) before any training starts."""

from __future__ import annotations

import json
import os
from typing import Any


class DataError(ValueError):
    """A data file or row that cannot be used; the message names the file and row."""


def read_rows(path: str) -> list[dict[str, Any]]:
    """All rows of ``path`` as dicts."""
    if not os.path.exists(path):
        raise DataError(f"data file {path!r} does not exist")
    if os.path.isdir(path):
        return _read_hf_dataset(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if ext == ".json":
        with open(path, encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: a .json data file must hold a list of rows")
        for i, row in enumerate(data, start=1):
            if not isinstance(row, dict):
                raise DataError(f"{path} row {i}: expected an object, got {type(row).__name__}")
        return data
    if ext == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise DataError(
        f"{path}: unsupported data file type {ext!r} (use .jsonl, .json, .parquet or a datasets directory)"
    )


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path} row {i}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(row, dict):
                raise DataError(f"{path} row {i}: expected a JSON object, got {type(row).__name__}")
            row["_row"] = i
            rows.append(row)
    return rows


def _read_hf_dataset(path: str) -> list[dict[str, Any]]:
    from datasets import load_from_disk

    try:
        ds = load_from_disk(path)
    except Exception as exc:
        raise DataError(
            f"{path}: not a datasets directory saved with save_to_disk ({exc})"
        ) from None
    if hasattr(ds, "keys") and not hasattr(ds, "column_names"):  # a DatasetDict
        if "train" not in ds:
            raise DataError(f"{path}: a DatasetDict needs a 'train' split, has {list(ds.keys())}")
        ds = ds["train"]
    return ds.to_list()


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
