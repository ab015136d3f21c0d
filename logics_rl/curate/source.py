"""The load step: raw sources (jsonl / json / parquet / ``datasets`` directories, or globs) with
a field mapping, read on Ray Data into the row table of ``rows.py``.

Each file is read by one Ray Data task with the streaming row reader (``data.files.iter_rows``),
so a bad row is named by file and row number. Rows are numbered across the inputs (file after
file) before reading: the count of every file is taken first (parquet metadata, a line count for
jsonl), so ``id`` is the same whichever task reads which file.

A row needs a non-empty string ``question``; ``answer`` and ``solution`` may be missing, a
string or a number (kept as its text); anything else is a bad row: an error naming file and row
(``curate.on_bad_row: error``) or dropped and counted (``drop``).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from logics_rl.config.schema import CurateInputConfig
from logics_rl.curate.rows import CORE, DROP, conform, tasks
from logics_rl.data.files import DataError, iter_rows

FIELDS = ("question", "answer", "solution", "source")
_BATCH = 4096


def expand(inputs: list[CurateInputConfig]) -> list[tuple[str, int]]:
    """``(path, input index)`` of every file, globs expanded in sorted order."""
    if not inputs:
        raise DataError("curate.inputs is empty: give at least one {path: ..., fields: {...}}")
    files = []
    for i, inp in enumerate(inputs):
        if any(c in inp.path for c in "*?["):
            found = sorted(glob.glob(inp.path))
            if not found:
                raise DataError(f"curate.inputs[{i}].path {inp.path!r} matches no file")
            files += [(p, i) for p in found]
        elif not os.path.exists(inp.path):
            raise DataError(f"curate.inputs[{i}].path {inp.path!r} does not exist")
        else:
            files.append((inp.path, i))
        if inp.answer_from and inp.answer_from != "boxed":
            try:
                if re.compile(inp.answer_from).groups < 1:
                    raise re.error("needs one group")
            except re.error as exc:
                raise DataError(
                    f"curate.inputs[{i}].answer_from: not 'boxed' nor a regular expression "
                    f"with a group ({exc})"
                ) from None
        bad = sorted(set(inp.fields) - set(FIELDS))
        if bad:
            raise DataError(f"curate.inputs[{i}].fields: unknown {bad}; map any of {FIELDS}")
    return files


def count_rows(path: str) -> int:
    """How many rows ``iter_rows(path)`` yields, without parsing them where the format allows."""
    if os.path.isdir(path):
        return sum(1 for _ in iter_rows(path))
    ext = os.path.splitext(path)[1].lower()
    if ext == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception as exc:
            raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    if ext in (".jsonl", ".ndjson"):
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    return sum(1 for _ in iter_rows(path))


def _text(value: Any, name: str, where: str, required: bool) -> str | None:
    if value is None and not required:
        return None
    if isinstance(value, str):
        if required and not value.strip():
            raise DataError(f"{where}: {name!r} is empty")
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "question":
        return str(value)
    if value is None:
        raise DataError(f"{where}: no {name!r} field")
    raise DataError(f"{where}: {name!r} must be a string, got {type(value).__name__}")


def read_file(item: dict, inputs: list[dict], drop_bad: bool) -> Iterator[pa.Table]:
    """Ray Data UDF: one file item in, its rows out (batches of ``_BATCH`` rows)."""
    path, file_idx, offset = str(item["path"][0]), int(item["file"][0]), int(item["offset"][0])
    inp = inputs[int(item["input"][0])]
    file_name = os.path.splitext(os.path.basename(path))[0]
    cols: dict[str, list] = {k: [] for k in (*CORE, DROP)}
    n = 0
    try:
        for row in iter_rows(path):
            cols["id"].append(offset + n)
            cols["file"].append(file_idx)
            cols["row"].append(row.number)
            n += 1
            try:
                values = _fields(row.data, inp, file_name, row.where)
                drop = None
            except DataError as exc:
                if not drop_bad:
                    raise
                values = dict.fromkeys(FIELDS)
                drop = "bad row: " + str(exc).removeprefix(row.where + ": ")
            for k in FIELDS:
                cols[k].append(values[k])
            cols[DROP].append(drop)
            if n % _BATCH == 0:
                yield _table(cols)
                cols = {k: [] for k in cols}
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} row {n + 1}: not valid UTF-8 ({exc.reason})") from None
    if cols["id"]:
        yield _table(cols)


def _fields(data: Any, inp: dict, file_name: str, where: str) -> dict:
    if not isinstance(data, dict):
        raise DataError(f"{where}: a row must be an object, got {type(data).__name__}")
    get = {k: data.get(inp["fields"].get(k, k)) for k in FIELDS}
    out = {
        "question": _text(get["question"], "question", where, required=True),
        "answer": _text(get["answer"], "answer", where, required=False),
        "solution": _text(get["solution"], "solution", where, required=False),
        "source": str(inp["source"] or get["source"] or file_name),
    }
    if out["answer"] is None and inp.get("answer_from") and out["solution"]:
        out["answer"] = answer_from(out["solution"], inp["answer_from"])
    return out


def answer_from(solution: str, how: str) -> str | None:
    """The answer inside ``solution``: its last ``\\boxed{...}`` (``how="boxed"``, braces
    balanced) or the first group of the regular expression ``how``; None when absent."""
    if how == "boxed":
        from logics_rl.rewards.boxed import boxed_answers

        found = [a for a in boxed_answers(solution) if a is not None]
        return found[-1].strip() if found else None
    m = re.search(how, solution, re.MULTILINE)
    return m.group(1).strip() if m and m.groups() else None


def _table(cols: dict[str, list]) -> pa.Table:
    return conform(
        pa.table({k: pa.array(v, type=CORE.get(k, pa.string())) for k, v in cols.items()})
    )


def read_inputs(inputs: list[CurateInputConfig], on_bad_row: str, concurrency: int | None):
    """The raw sources as one Ray dataset in the row table, bad rows handled per ``on_bad_row``;
    and the list of files read (their index is the ``file`` column)."""
    import ray.data

    files = expand(inputs)
    items, offset = [], 0
    for i, (path, inp) in enumerate(files):
        items.append({"path": path, "file": i, "offset": offset, "input": inp})
        offset += count_rows(path)
    if offset >= 1 << 32:
        raise DataError(f"curate: {offset} rows; at most 2**32 rows per pipeline")
    plain = [
        {"fields": dict(x.fields), "source": x.source, "answer_from": x.answer_from} for x in inputs
    ]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        read_file,
        fn_kwargs={"inputs": plain, "drop_bad": str(on_bad_row) == "drop"},
        batch_size=1,
        batch_format="pyarrow",
        compute=tasks(concurrency),
    )
    return ds, [p for p, _ in files], offset
