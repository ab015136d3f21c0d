"""``mode: eval``: k samples per prompt of each benchmark file, their answers and the metrics.

    python -m logics_rl.main --config recipes/eval_math.yaml model.path=DIR

``model.path`` is an HF directory or a run's checkpoint (``checkpoints/step_N``, verified and
exported first). Each file of ``eval.files`` (the prompt schema; ``data.val_files`` when empty)
gets its own sampling settings (k, temperature, top-p, max tokens; unset ones from ``eval``).
Generation runs on a group of rollout workers, one per process of ``cluster`` (data-parallel
when there are several), ``eval.prompts_per_call`` prompts at a time; answers are checked by the
``math_verify`` reward's settings and the configured reward terms are scored and reported.

Output in the run directory: ``eval/<name>/samples.jsonl`` (one row per sample: prompt,
response, extracted answer, verdict, answer class, length, finish reason, reward terms) and
``summary.json``: per file, overall and per ``data_source``, avg@k, pass@j for every j <= k,
maj@j, response length (mean, max), truncation and no-answer rates, reward terms, plus the
settings, the prompts dropped as too long, counters and timings. The table is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from logics_rl.config.loader import ConfigError
from logics_rl.config.schema import Config, EvalFileConfig
from logics_rl.data.prompts import PromptRecord, load_prompts, to_batch
from logics_rl.engines.rollout import Sampling
from logics_rl.evaluation.answers import AnswerOptions
from logics_rl.evaluation.metrics import GroupResult, by_source, summarize
from logics_rl.evaluation.sampling import generate_and_evaluate, sample_records
from logics_rl.rewards import build_reward


@dataclass
class Benchmark:
    name: str
    path: str
    sampling: Sampling
    prompts: list[PromptRecord]
    counts: dict[str, int]


def benchmark_files(cfg: Config) -> list[EvalFileConfig]:
    files = list(cfg.eval.files) or [EvalFileConfig(path=p) for p in cfg.data.val_files]
    if not files:
        raise ConfigError("mode=eval: no files (eval.files and data.val_files are empty)")
    return files


def _name(f: EvalFileConfig) -> str:
    if f.name:
        return f.name
    base = os.path.basename(os.path.normpath(f.path))
    return base.split(".")[0] or base


def load_benchmarks(cfg: Config, tokenizer) -> list[Benchmark]:
    e, r, d = cfg.eval, cfg.rollout, cfg.data
    out: list[Benchmark] = []
    for f in benchmark_files(cfg):
        name = _name(f)
        if any(b.name == name for b in out):
            raise ConfigError(
                f"eval.files: two files are named {name!r}; give them eval.files[].name"
            )
        prompts, counts = load_prompts(
            [f.path],
            tokenizer,
            max_prompt_length=d.max_prompt_length,
            apply_chat_template=d.apply_chat_template,
            system_prompt=d.system_prompt,
        )
        sampling = Sampling(
            n=f.k or e.k,
            temperature=e.temperature if f.temperature is None else f.temperature,
            top_p=f.top_p or e.top_p,
            top_k=r.sampling.top_k,
            max_tokens=f.max_tokens or e.max_tokens or r.max_response_length,
            stop=list(r.sampling.stop),
        )
        out.append(Benchmark(name, f.path, sampling, prompts, counts))
    return out


def user_records(
    users: list[str], tokenizer, system_prompt: str | None, max_tokens: int
) -> list[PromptRecord | None]:
    """Plain user turns rendered with the chat template (``system_prompt`` first when set);
    None where a prompt is longer than ``max_tokens``."""
    out: list[PromptRecord | None] = []
    for u in users:
        msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": u}
        ]
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(PromptRecord(ids, text, None, "", {}, u) if len(ids) <= max_tokens else None)
    return out


class Evaluator:
    """Rollout workers serving one model (one per ``cluster`` process), the reward and the answer
    settings: ``evaluate`` runs prompts through ``generate_and_evaluate``, a call at a time.
    Use as a context manager: the workers are killed and their resources freed on exit."""

    def __init__(self, cfg: Config, model_path: str, width: int, max_tokens: int, console):
        from logics_rl.trainer.setup import start_workers
        from logics_rl.workers.rollout import RolloutWorker

        self.width, self.console, self.per_call = width, console, cfg.eval.prompts_per_call
        self.reward = build_reward(cfg.reward)
        self.answers = AnswerOptions.of_reward(
            self.reward, cfg.reward.num_workers, cfg.reward.timeout_s
        )
        self.pool, self.workers = start_workers(
            cfg, RolloutWorker, model_path, cfg.rollout, width + max_tokens, cfg.trainer.seed,
            console=console,
        )  # fmt: skip

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.reward.close()
        self.workers.kill()
        self.pool.remove()

    def generate(
        self, prompts: list[PromptRecord], sampling: Sampling, pad_id: int
    ) -> list[list[str]]:
        """``sampling.n`` replies per prompt (plain generation, no scoring)."""
        from logics_rl.batches import RESPONSE, group_rows

        out: list[list[str]] = []
        for start in range(0, len(prompts), self.per_call):
            batch = to_batch(
                prompts[start : start + self.per_call], pad_id, self.width, uid_start=start
            )
            gen = self.workers.generate_sequences(batch.batch, sampling)
            out.extend([[gen[RESPONSE][i] for i in rows] for rows in group_rows(gen)])
        return out

    def evaluate(
        self, name: str, prompts: list[PromptRecord], sampling: Sampling, pad_id: int, on_rows=None
    ) -> tuple[list[GroupResult], dict[str, float], float, int]:
        """Every prompt's k samples; ``on_rows(sample_records)`` after each call. Returns the
        groups (in prompt order), summed counters, seconds and response tokens."""
        groups: list[GroupResult] = []
        counters: dict[str, float] = {}
        t0, tokens, step = time.perf_counter(), 0, self.per_call
        for start in range(0, len(prompts), step):
            batch = to_batch(prompts[start : start + step], pad_id, self.width, uid_start=start)
            scored, found, metrics = generate_and_evaluate(
                self.workers, batch, sampling, self.reward, self.answers, sampling.max_tokens
            )
            for k, v in metrics.items():
                counters[k] = counters.get(k, 0.0) + v
            tokens += sum(sum(g.lengths) for g in found)
            if on_rows is not None:
                rows = sample_records(scored, found)
                for row in rows:
                    row["prompt_index"] += start
                on_rows(rows)
            groups.extend(found)
            done = min(start + step, len(prompts))
            self.console.print(f"{name}: {done}/{len(prompts)} prompts", highlight=False)
        return groups, counters, time.perf_counter() - t0, tokens


def run_eval(cfg: Config, run_dir: str, console: Console, model_path: str) -> dict[str, Any]:
    """Evaluate ``model_path`` on every benchmark; returns the summary (also saved)."""
    from transformers import AutoTokenizer

    from logics_rl.workers.rollout import pad_id_of

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    benches = load_benchmarks(cfg, tokenizer)
    for b in benches:
        line = f"{b.name}: {len(b.prompts)} of {b.counts['rows']} prompts, k={b.sampling.n}"
        if b.counts["too_long"]:
            line += (
                f" [yellow]({b.counts['too_long']} longer than data.max_prompt_length="
                f"{cfg.data.max_prompt_length} tokens left out)[/yellow]"
            )
        console.print(line, highlight=False)
    width = max(len(p.prompt_ids) for b in benches for p in b.prompts)
    longest = max(b.sampling.max_tokens for b in benches)
    summary: dict[str, Any] = {"model": model_path}
    with Evaluator(cfg, model_path, width, longest, console) as ev:
        for b in benches:
            summary[b.name] = _evaluate(b, ev, pad_id_of(tokenizer), cfg, run_dir)
    with open(os.path.join(run_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    print_summary(console, summary)
    console.print(f"summary: {os.path.join(run_dir, 'summary.json')}", highlight=False)
    return summary


def _evaluate(b: Benchmark, ev: Evaluator, pad_id: int, cfg: Config, run_dir: str):
    out_dir = os.path.join(run_dir, "eval", b.name)
    os.makedirs(out_dir, exist_ok=True)
    samples = os.path.join(out_dir, "samples.jsonl")
    write = cfg.eval.write_samples
    with open(samples, "w", encoding="utf-8") if write else contextlib.nullcontext() as fh:

        def on_rows(rows: list[dict]) -> None:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

        groups, counters, seconds, tokens = ev.evaluate(
            b.name, b.prompts, b.sampling, pad_id, on_rows if write else None
        )
    s = b.sampling
    return {
        "path": os.path.abspath(b.path),
        "settings": {
            "k": s.n,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "stop": s.stop,
        },  # fmt: skip
        "prompts_too_long": b.counts["too_long"],
        "all": summarize(groups),
        "sources": {src: summarize(gs) for src, gs in by_source(groups).items()},
        "counters": counters,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "samples": samples if write else None,
    }


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    """One row per file, and per data source within it when it has several: prompts (n),
    samples each (k), avg@k (= pass@1), pass@k, maj@k, response length (mean, max), the share
    cut at the token limit and the share without an answer (none)."""
    table = Table(
        title=f"evaluation of {summary.get('model', '')}", box=box.SIMPLE_HEAD, pad_edge=False
    )
    table.add_column("file/source", no_wrap=True)
    for col in ("n", "k", "avg@k", "pass@k", "maj@k", "len", "max", "cut", "none"):
        table.add_column(col, justify="right", no_wrap=True)

    def row(label: str, m: dict[str, float]) -> None:
        k = int(m["k"])
        table.add_row(
            label, f"{int(m['prompts'])}", f"{k}", f"{m[f'avg@{k}']:.3f}",
            f"{m[f'pass@{k}']:.3f}", f"{m[f'maj@{k}']:.3f}", f"{m['response_length/mean']:.0f}",
            f"{m['response_length/max']:.0f}", f"{m['truncated']:.2f}", f"{m['no_answer']:.2f}",
        )  # fmt: skip

    for name, res in summary.items():
        if not isinstance(res, dict) or "all" not in res:
            continue
        row(name, res["all"])
        if len(res["sources"]) > 1:
            for src, m in res["sources"].items():
                row(f"  {src}", m)
    console.print(table)
