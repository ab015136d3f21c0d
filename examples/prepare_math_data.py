"""Turn local copies of public math sets into the logics-rl prompt schema (parquet or jsonl).

Nothing is downloaded: point it at files you already have (the HF hub's parquet / jsonl exports).

    python examples/prepare_math_data.py gsm8k  gsm8k/main/train-00000-of-00001.parquet  data/gsm8k/train.parquet
    python examples/prepare_math_data.py math   MATH/train.jsonl                         data/math/train.parquet
    python examples/prepare_math_data.py dapo   dapo-math-17k.parquet                    data/dapo_math_17k/train.parquet

Output rows (see ``logics_rl/data/prompts.py``)::

    {"prompt": "<question> Please reason step by step, and put your final answer within \\boxed{}.",
     "ground_truth": "<answer as LaTeX>", "data_source": "gsm8k", "extras": {"index": 17}}

Sources and their fields:
- ``gsm8k`` (openai/gsm8k): ``question``; ``answer`` ends with ``#### <number>`` (commas removed).
- ``math`` (hendrycks MATH / MATH-500): ``problem``; ``answer`` when present, else the last
  ``\\boxed{...}`` of ``solution``.
- ``dapo`` (DAPO-Math-17k, verl layout): ``prompt`` (chat messages; the user turn already asks
  for the answer format), ``reward_model.ground_truth``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1] if depth == 0 else None


def from_gsm8k(row: dict[str, Any]) -> dict[str, Any]:
    answer = row["answer"].split("####")[-1].strip().replace(",", "")
    return {"prompt": f"{row['question'].strip()} {INSTRUCTION}", "ground_truth": answer}


def from_math(row: dict[str, Any]) -> dict[str, Any]:
    answer = row.get("answer") or last_boxed(row.get("solution", ""))
    if answer is None:
        raise ValueError("no 'answer' and no \\boxed{} in 'solution'")
    out = {"prompt": f"{row['problem'].strip()} {INSTRUCTION}", "ground_truth": answer}
    extras = {k: row[k] for k in ("level", "type", "subject") if k in row}
    return {**out, "extras": extras} if extras else out


def from_dapo(row: dict[str, Any]) -> dict[str, Any]:
    messages = row["prompt"]
    if hasattr(messages, "tolist"):  # parquet gives numpy arrays of dicts
        messages = messages.tolist()
    return {
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "ground_truth": str(row["reward_model"]["ground_truth"]),
    }


CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "gsm8k": from_gsm8k,
    "math": from_math,
    "dapo": from_dapo,
}


def read(path: str) -> Iterable[dict[str, Any]]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def convert(source: str, rows: Iterable[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Convert every row; a row that does not fit stops with its file and 1-based row number."""
    fn = CONVERTERS[source]
    out = []
    for i, row in enumerate(rows, start=1):
        try:
            rec = fn(row)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SystemExit(f"{where}: row {i}: cannot convert as {source}: {exc!r}") from None
        out.append({**rec, "data_source": source, "extras": {**rec.get("extras", {}), "index": i}})
    return out


def write(rows: list[dict[str, Any]], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
        return
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("source", choices=sorted(CONVERTERS))
    ap.add_argument("input", help="a local .parquet or .jsonl file")
    ap.add_argument("output", help="where to write (.parquet or .jsonl)")
    args = ap.parse_args(argv)
    rows = convert(args.source, read(args.input), args.input)
    write(rows, args.output)
    print(f"{len(rows)} rows -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
