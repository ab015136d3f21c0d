"""The row table every curation step reads and writes (Arrow / parquet).

Core columns, typed the same in every step's output so that parquet files of one step always
share a schema (a block whose answers are all missing is still ``string``, not ``null``):

    id        int64   0-based position of the row in the inputs (file after file): unique, stable
    file      int32   index of the input file (``report.json`` lists the paths)
    row       int64   1-based row number in that file (line of a jsonl file)
    question  string
    answer    string  the reference answer (None when the source has none)
    solution  string  a worked solution (None when the source has none)
    source    string  the data source name
    _drop     string  why the step removed the row; null when the row is kept

Steps add their own typed columns (annotations, ``pass_rate``...). A step writes every row it
received, the removed ones with their reason, so nothing is lost and its report is a count of
``_drop``; the next step reads only the kept rows.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

DROP = "_drop"
CORE = {
    "id": pa.int64(),
    "file": pa.int32(),
    "row": pa.int64(),
    "question": pa.string(),
    "answer": pa.string(),
    "solution": pa.string(),
    "source": pa.string(),
}


def conform(table: pa.Table) -> pa.Table:
    """``table`` with the core columns and ``_drop`` cast to their types (``_drop`` added)."""
    if DROP not in table.column_names:
        table = table.append_column(DROP, pa.nulls(table.num_rows, pa.string()))
    for name, typ in {**CORE, DROP: pa.string()}.items():
        if name in table.column_names and table.schema.field(name).type != typ:
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.cast(table.column(name), typ))
    return table


def mark(table: pa.Table, reasons: list[str | None]) -> pa.Table:
    """``table`` with ``_drop`` set to ``reasons`` where the row had none yet."""
    new = pa.array(reasons, type=pa.string())
    if DROP in table.column_names:
        old = table.column(DROP)
        new = pc.if_else(pc.is_null(old), new, old)
        return table.set_column(table.column_names.index(DROP), DROP, new)
    return table.append_column(DROP, new)


def fill(template: str, row: dict) -> str:
    """``template`` with ``{question}``, ``{answer}`` and ``{solution}`` replaced (no other brace
    is special, so LaTeX such as ``\\boxed{}`` is written as is)."""
    for key in ("question", "answer", "solution"):
        template = template.replace("{" + key + "}", str(row.get(key) or ""))
    return template


def tasks(n: int | None):
    """Ray Data compute: at most ``n`` tasks of a function UDF at once."""
    import ray.data

    return ray.data.TaskPoolStrategy(size=n)


def actors(n: int):
    """Ray Data compute: ``n`` actors of a class UDF (its model / tokenizer loaded once each)."""
    import ray.data

    return ray.data.ActorPoolStrategy(size=n)
