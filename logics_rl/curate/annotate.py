"""The annotate step: rule-based fields for every row, optional model judgements, filters.

Columns added:
    answer_type      integer | number | expression | interval | set | choice | text | none
    verifiable       math-verify parses the answer and accepts it against itself (run in the
                     reward's scoring pool, with its per-sample deadline)
    language         ISO 639-1 code of the question (``py3langid`` on its first 300
                     characters; about 1 ms a row; ``annotate.language: false`` skips it)
    question_tokens  length in tokens of ``annotate.tokenizer`` (words when none is set)
    solution_tokens  the same for the solution (0 when there is none)
    judge_<key>      with ``annotate.judge.model``: the judge's reply, parsed (``judge_ok`` says
                     whether the reply held a JSON object with every key in the right type;
                     rows whose reply cannot be parsed are counted, never guessed)

Then ``annotate.filters`` drop rows, each with the reason ``filter: <field> <op> <value>``.
"""

from __future__ import annotations

import functools
import re

import pyarrow as pa

from logics_rl.config.loader import to_plain
from logics_rl.config.schema import CurateConfig
from logics_rl.curate.rows import mark, tasks
from logics_rl.curate.text import words

_INT = re.compile(r"^[+-]?\d{1,3}(,\d{3})+$|^[+-]?\d+$")
_NUM = re.compile(
    r"^[+-]?(\d+\.\d*|\.\d+|\d+)(e[+-]?\d+)?%?$|^[+-]?\d+/\d+$|^[+-]?\\[dt]?frac\{\d+\}\{\d+\}$"
)
_CHOICE = re.compile(r"^\(?[A-Ha-h]\)?$")
_INTERVAL = re.compile(r"^[\[(].*,.*[\])]$")
_SET = re.compile(r"^(\\\{|\{|\\left\\\{).*(\\\}|\}|\\right\\\})$")
_TEXTY = re.compile(r"^[A-Za-z][A-Za-z ,.'-]*$")


def answer_type(answer: str | None) -> str:
    if answer is None:
        return "none"
    a = answer.strip().strip("$").strip()
    if a.startswith("\\boxed{") and a.endswith("}"):
        a = a[7:-1].strip()
    if not a:
        return "none"
    compact = a.replace(" ", "")
    if _INT.match(compact):
        return "integer"
    if _NUM.match(compact):
        return "number"
    if _CHOICE.match(compact):
        return "choice"
    if _SET.match(compact):
        return "set"
    if _INTERVAL.match(compact):
        return "interval"
    if _TEXTY.match(a) and len(a.split()) >= 1 and not re.fullmatch(r"[a-z]", a):
        return "text"
    return "expression"


def verifiable(answers: list[str | None], workers: int, timeout_s: float) -> list[bool]:
    """Whether math-verify parses each answer and accepts it against itself."""
    from logics_rl.rewards import RewardInput, math_verify

    idx = [i for i, a in enumerate(answers) if a and a.strip()]
    out = [False] * len(answers)
    if idx:
        preds = [f"\\boxed{{{answers[i]}}}" for i in idx]
        res = math_verify(
            RewardInput.build(preds, ground_truths=[answers[i] for i in idx]),
            num_workers=workers,
            timeout_s=timeout_s,
        )
        for i, score in zip(idx, res.components["correct"]):
            out[i] = score == 1.0
    return out


def token_lengths(texts: list[str | None], tokenizer) -> list[int]:
    if tokenizer is None:
        return [len(words(t)) if t else 0 for t in texts]
    present = [t or "" for t in texts]
    ids = tokenizer(present, add_special_tokens=False)["input_ids"]
    return [len(x) if t else 0 for x, t in zip(ids, texts)]


@functools.lru_cache(maxsize=4)
def tokenizer(path: str | None):
    """The tokenizer at ``path`` (None: none), loaded once per worker process."""
    if not path:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _annotate(
    batch: pa.Table, tokenizer_path: str | None, language: bool, timeout_s: float
) -> pa.Table:
    tok = tokenizer(tokenizer_path)
    q = batch.column("question").to_pylist()
    a = batch.column("answer").to_pylist()
    s = batch.column("solution").to_pylist()
    cols = {
        "answer_type": pa.array([answer_type(x) for x in a], pa.string()),
        "verifiable": pa.array(verifiable(a, 1, timeout_s), pa.bool_()),
        "question_tokens": pa.array(token_lengths(q, tok), pa.int64()),
        "solution_tokens": pa.array(token_lengths(s, tok), pa.int64()),
    }
    if language:
        import py3langid

        cols["language"] = pa.array([py3langid.classify(x[:300])[0] for x in q], pa.string())
    for name, col in cols.items():
        batch = batch.append_column(name, col)
    return batch


_OPS = {
    "==": lambda x, v: x == v,
    "!=": lambda x, v: x != v,
    "<": lambda x, v: x is not None and x < v,
    "<=": lambda x, v: x is not None and x <= v,
    ">": lambda x, v: x is not None and x > v,
    ">=": lambda x, v: x is not None and x >= v,
    "in": lambda x, v: x in v,
    "not in": lambda x, v: x not in v,
}


def apply_filters(batch: pa.Table, filters: list[dict]) -> pa.Table:
    """``_drop`` set for rows failing a filter (the first failing one is the reason)."""
    if not filters:
        return batch
    for f in filters:
        if f["field"] not in batch.column_names:
            raise ValueError(
                f"curate.annotate.filters: no column {f['field']!r} "
                f"(columns: {sorted(batch.column_names)})"
            )
    cols = {f["field"]: batch.column(f["field"]).to_pylist() for f in filters}
    reasons = []
    for i in range(batch.num_rows):
        why = None
        for f in filters:
            if not _OPS[f["op"]](cols[f["field"]][i], f["value"]):
                why = f"filter: {f['field']} {f['op']} {f['value']!r}"
                break
        reasons.append(why)
    return mark(batch, reasons)


class Annotate:
    name = "annotate"

    def __init__(self, cfg: CurateConfig):
        self.cfg = cfg.annotate

    def settings(self) -> dict:
        return to_plain(self.cfg)

    def apply(self, ds, ctx):
        c = self.cfg
        tok = ctx.model_path(c.tokenizer) if c.tokenizer else None
        rw = ctx.cfg.reward
        ds = ds.map_batches(
            _annotate,
            fn_kwargs={"tokenizer_path": tok, "language": c.language, "timeout_s": rw.timeout_s},
            batch_format="pyarrow",
            batch_size=1024,
            compute=tasks(ctx.concurrency),
        )
        extra = {}
        if c.judge.model:
            from logics_rl.curate.generate import judge

            ds = judge(ds, c.judge, ctx).materialize()
            ok = [b["judge_ok"] for b in ds.select_columns(["judge_ok"]).iter_batches()]
            replies = int(sum(len(x) for x in ok))
            extra["judge"] = {
                "replies": replies,
                "unparsed": replies - int(sum(x.sum() for x in ok)),
            }
        filters = [{**to_plain(f), "op": str(f.op)} for f in c.filters]
        ds = ds.map_batches(apply_filters, fn_kwargs={"filters": filters}, batch_format="pyarrow")
        return ds, extra
