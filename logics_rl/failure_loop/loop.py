"""The failure-driven loop: a model's verified failures turned into stage two's targeted data.

    evaluate    k samples per probe question (the eval code); a failure is a question whose
                pass rate (math-verify verdicts) is below ``fail_below``
    retrieve    the nearest corpus items of each failure (retriever registry; skipped without
                a corpus)
    synthesize  new questions near each failure (synthesizer registry)
    verify      a candidate with a computed answer keeps it when math-verify parses it; one
                without is answered k times by a teacher and kept when the majority answer
                (math-verify equivalence) has at least ``verify.agree`` of the votes
    filter      the data engine's dedup (against the training set, which is kept first) and
                decontamination (against ``decontaminate_against`` and ``data.val_files``)
    mix         the training set plus the kept questions, the latter ``mix_ratio`` of the mix

Each step writes its rows (``out.jsonl``) and a ``report.json`` (rows in / out, dropped by
reason, its own figures) into ``<run_dir>/failure_loop/<NN>-<step>-<key>/`` and then ``DONE``;
``key`` chains the step's settings to the steps before it (and to the model and the input
files), so a re-run resumes after the last finished step. The mixed set lands in
``<run_dir>/failure_loop/output/rl.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from logics_rl.config.loader import ConfigError, to_plain
from logics_rl.config.schema import Config
from logics_rl.data.files import iter_files, write_jsonl

DONE = "DONE"
VERSION = 1
SYNTH = "synthesized"


@dataclass
class Step:
    name: str
    rows_in: int
    rows: list[dict]
    dropped: dict[str, int]
    extra: dict[str, Any]
    seconds: float = 0.0
    cached: bool = False


def _stat(path: str) -> list:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, int(st.st_mtime)]


def _key(parent: str, name: str, settings: Any) -> str:
    text = json.dumps([VERSION, parent, name, settings], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class FailureLoop:
    """The loop's steps over one model (``model_path``); ``run()`` returns the report."""

    def __init__(self, cfg: Config, root: str, console: Console, model_path: str,
                 resolve: Callable[[str | None], str] | None = None):  # fmt: skip
        self.cfg, self.lc, self.console = cfg, cfg.failure_loop, console
        self.model_path = model_path
        self.resolve = resolve or (lambda p: p or model_path)
        self.root = root
        self.probe_files = list(self.lc.probe_files) or list(cfg.data.train_files)
        if not self.probe_files:
            raise ConfigError("failure_loop: no probe questions (probe_files and data.train_files)")
        if not 0.0 <= self.lc.mix_ratio < 1.0:
            raise ConfigError(f"failure_loop.mix_ratio must be in [0, 1), got {self.lc.mix_ratio}")

    # ------------------------------------------------------------------ driver
    def run(self) -> dict:
        os.makedirs(self.root, exist_ok=True)
        lc = self.lc
        model = [os.path.abspath(self.model_path)]
        if os.path.isdir(self.model_path):  # its weights and configs, as written
            model += [
                _stat(os.path.join(self.model_path, f))
                for f in sorted(os.listdir(self.model_path))
                if f.endswith((".json", ".safetensors"))
            ]
        key = _key("", "inputs", {
            "model": model, "probe": [_stat(p) for p in self.probe_files],
            "train": [_stat(p) for p in self.cfg.data.train_files],
        })  # fmt: skip
        plan: list[tuple[str, Any, Callable[[list[dict]], Step]]] = [
            ("evaluate", [lc.max_probes, lc.k, lc.temperature, lc.top_p, lc.max_tokens,
             lc.fail_below, to_plain(self.cfg.rollout), to_plain(self.cfg.reward),
             self.cfg.data.max_prompt_length, self.cfg.data.system_prompt, self.cfg.trainer.seed],
             self.evaluate),
            ("retrieve", [to_plain(lc.retrieval), [_stat(p) for p in lc.retrieval.corpus]],
             self.retrieve),
            ("synthesize", [to_plain(lc.synthesizer), lc.seed], self.synthesize),
            ("verify", [to_plain(lc.verify), to_plain(self.cfg.reward)], self.verify),
            ("filter", [to_plain(self.cfg.curate.dedup), self.cfg.curate.decontaminate.ngram,
             [_stat(p) for p in self._benchmarks()]], self.filter),
            ("mix", [lc.mix_ratio, lc.seed, [_stat(p) for p in self.cfg.sft.train_files]],
             self.mix),
        ]  # fmt: skip
        rows: list[dict] = []
        steps: list[Step] = []
        for i, (name, settings, fn) in enumerate(plan):
            key = _key(key, name, settings)
            step = self._cached(f"{i:02d}-{name}-{key[:12]}", name, fn, rows)
            steps.append(step)
            rows = step.rows
            self.console.print(_line(step), highlight=False)
        report = {
            "model": self.model_path,
            "steps": [{k: v for k, v in s.__dict__.items() if k != "rows"} for s in steps],
            "train_file": steps[-1].extra["train_file"],
            "sft_file": steps[-1].extra.get("sft_file"),
        }
        with open(os.path.join(self.root, "report.json"), "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
        print_report(self.console, steps)
        return report

    def _cached(self, dirname: str, name: str, fn, rows: list[dict]) -> Step:
        d = os.path.join(self.root, dirname)
        if os.path.exists(os.path.join(d, DONE)):
            with open(os.path.join(d, "report.json"), encoding="utf-8") as fh:
                rep = json.load(fh)
            with open(os.path.join(d, "out.jsonl"), encoding="utf-8") as fh:
                out = [json.loads(line) for line in fh]
            return Step(
                name, rep["rows_in"], out, rep["dropped"], rep["extra"], rep["seconds"], True
            )
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        self.step_dir = d
        t0 = time.perf_counter()
        step = fn(rows)
        step.seconds = time.perf_counter() - t0
        write_jsonl(os.path.join(d, "out.jsonl"), step.rows)
        with open(os.path.join(d, "report.json"), "w", encoding="utf-8") as fh:
            json.dump({k: v for k, v in step.__dict__.items() if k != "rows"}, fh, indent=2)
        open(os.path.join(d, DONE), "w").close()
        return step

    # ------------------------------------------------------------------ steps
    def evaluate(self, _: list[dict]) -> Step:
        from transformers import AutoTokenizer

        from logics_rl.data.prompts import load_prompts
        from logics_rl.engines.rollout import Sampling
        from logics_rl.evaluation.run import Evaluator
        from logics_rl.workers.rollout import pad_id_of

        cfg, lc = self.cfg, self.lc
        tok = AutoTokenizer.from_pretrained(self.model_path)
        records, counts = load_prompts(
            self.probe_files, tok, max_prompt_length=cfg.data.max_prompt_length,
            apply_chat_template=cfg.data.apply_chat_template, system_prompt=cfg.data.system_prompt,
        )  # fmt: skip
        records = records[: lc.max_probes] if lc.max_probes else records
        r = cfg.rollout
        sampling = Sampling(
            n=lc.k, temperature=lc.temperature, top_p=lc.top_p, top_k=r.sampling.top_k,
            max_tokens=lc.max_tokens or r.max_response_length, stop=list(r.sampling.stop),
        )  # fmt: skip
        width = max(len(p.prompt_ids) for p in records)
        with Evaluator(cfg, self.model_path, width, sampling.max_tokens, self.console) as ev:
            groups, counters, _, _ = ev.evaluate("probe", records, sampling, pad_id_of(tok))
        rows, by_source, hist = [], {}, Counter()
        for uid, (rec, g) in enumerate(zip(records, groups)):
            rate = sum(g.answers.correct) / g.n
            failed = rate < lc.fail_below
            s = by_source.setdefault(rec.data_source, {"probes": 0, "failures": 0})
            s["probes"] += 1
            s["failures"] += int(failed)
            hist[f"{min(int(rate * 10), 9) / 10:.1f}"] += 1
            if failed:
                rows.append({
                    "uid": uid, "question": rec.question, "ground_truth": rec.ground_truth,
                    "data_source": rec.data_source, "extras": rec.extras, "pass_rate": rate,
                    "answers": g.answers.answers,
                })  # fmt: skip
        extra = {
            "probes": len(records), "too_long": counts["too_long"], "failures": len(rows),
            "by_source": by_source, "pass_rate_histogram": dict(sorted(hist.items())),
            "counters": counters,
        }  # fmt: skip
        return Step("evaluate", len(records), rows, {"passed": len(records) - len(rows)}, extra)

    def retrieve(self, failures: list[dict]) -> Step:
        rc = self.lc.retrieval
        if not rc.corpus or not failures:
            rows = [{**f, "retrieved": []} for f in failures]
            why = "no retrieval.corpus" if not rc.corpus else "no failures"
            return Step("retrieve", len(failures), rows, {}, {"skipped": why})
        from logics_rl.failure_loop.retrieval import RETRIEVERS, RetrievalRequest, load_corpus
        from logics_rl.registry import check_params

        fn = RETRIEVERS.get(rc.name)
        params = check_params(fn, rc.params, what="failure_loop.retrieval.params")
        corpus = load_corpus(rc.corpus, rc.field)
        hits = fn(RetrievalRequest([f["question"] for f in failures], corpus, rc.top_k), **params)
        rows = [
            {**f, "retrieved": [{"text": corpus[j], "index": j, "score": s} for j, s in h]}
            for f, h in zip(failures, hits)
        ]
        return Step("retrieve", len(failures), rows, {}, {"corpus": len(corpus), "top_k": rc.top_k})

    def synthesize(self, failures: list[dict]) -> Step:
        from logics_rl.failure_loop.synthesize import (
            SYNTHESIZERS,
            Failure,
            SynthRequest,
        )
        from logics_rl.registry import check_params

        sc = self.lc.synthesizer
        fn = SYNTHESIZERS.get(sc.name)
        params = check_params(fn, sc.params, what="failure_loop.synthesizer.params")
        fs = [
            Failure(f["uid"], f["question"], f["ground_truth"], f["data_source"],
                    f["pass_rate"], f["answers"], f.get("extras") or {})
            for f in failures
        ]  # fmt: skip
        req = SynthRequest(
            fs,
            [f.get("retrieved", []) for f in failures],
            sc.per_failure,
            random.Random(self.lc.seed),
        )
        if not fs:
            cands = []
        elif getattr(fn, "needs_teacher", False):
            default = inspect.signature(fn).parameters.get("max_tokens")
            longest = int(params.get("max_tokens", default.default if default else 1024))
            with self._teacher(longest) as generate:
                req.generate = generate
                cands = fn(req, **params)
        else:
            cands = fn(req, **params)
        rows = [dataclasses.asdict(c) for c in cands]
        got = Counter(c.failure for c in cands)
        structures = Counter(str(c.info.get("structure", "")) for c in cands if c.info)
        extra = {
            "candidates": len(rows),
            "failures_without_candidates": sum(1 for f in fs if got[f.uid] == 0),
            "by_structure": dict(structures.most_common(20)),
        }
        return Step("synthesize", len(failures), rows, {}, extra)

    @contextlib.contextmanager
    def _teacher(self, max_tokens: int):
        """``generate(users, n, temperature, top_p, max_tokens)`` on the teacher
        (``verify.teacher``, default the model), served while the block runs."""
        from transformers import AutoTokenizer

        from logics_rl.engines.rollout import Sampling
        from logics_rl.evaluation.run import Evaluator, user_records
        from logics_rl.workers.rollout import pad_id_of

        cfg = self.cfg
        teacher = self.resolve(self.lc.verify.teacher)
        tok = AutoTokenizer.from_pretrained(teacher)
        width = cfg.data.max_prompt_length
        with Evaluator(cfg, teacher, width, max_tokens, self.console) as ev:

            def generate(users, n, temperature, top_p, max_tokens):
                records = user_records(users, tok, cfg.data.system_prompt, width)
                live = [r for r in records if r is not None]
                s = Sampling(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                             stop=list(cfg.rollout.sampling.stop))  # fmt: skip
                got = iter(ev.generate(live, s, pad_id_of(tok)) if live else [])
                return [next(got) if r is not None else [] for r in records]

            yield generate

    def verify(self, cands: list[dict]) -> Step:
        from logics_rl.rewards import RewardInput, math_verify

        known = [c for c in cands if c["ground_truth"] is not None]
        pending = [c for c in cands if c["ground_truth"] is None]
        dropped: Counter[str] = Counter()
        kept = []
        if known:
            gts = [str(c["ground_truth"]) for c in known]
            ok = math_verify(
                RewardInput.build([f"\\boxed{{{g}}}" for g in gts], ground_truths=gts),
                num_workers=self.cfg.reward.num_workers, timeout_s=self.cfg.reward.timeout_s,
            ).components["correct"]  # fmt: skip
            for c, o in zip(known, ok):
                if o == 1.0:
                    kept.append({**c, "verified_by": "construction"})
                else:
                    dropped["answer does not parse"] += 1
        extra: dict[str, Any] = {"known_answers": len(known), "teacher_checked": len(pending)}
        if pending:
            agreed, why, stats = self._agreement(pending)
            kept.extend(agreed)
            dropped.update(why)
            extra.update(stats)
        return Step("verify", len(cands), kept, dict(dropped), extra)

    def _agreement(self, pending: list[dict]) -> tuple[list[dict], Counter, dict]:
        """k teacher answers per question; kept when the majority class has ``agree`` of them."""
        from transformers import AutoTokenizer

        from logics_rl.engines.rollout import Sampling
        from logics_rl.evaluation.run import Evaluator, user_records
        from logics_rl.workers.rollout import pad_id_of

        v, cfg = self.lc.verify, self.cfg
        teacher = self.resolve(v.teacher)
        tok = AutoTokenizer.from_pretrained(teacher)
        rendered = user_records(
            [c["question"] for c in pending],
            tok,
            cfg.data.system_prompt,
            cfg.data.max_prompt_length,
        )
        live = [i for i, r in enumerate(rendered) if r is not None]
        records = [
            dataclasses.replace(rendered[i], data_source=pending[i]["data_source"]) for i in live
        ]
        why: Counter[str] = Counter()
        if len(live) < len(pending):
            why["question longer than data.max_prompt_length"] = len(pending) - len(live)
        kept = []
        if records:
            sampling = Sampling(n=v.k, temperature=v.temperature, top_p=v.top_p,
                                max_tokens=v.max_tokens, stop=list(cfg.rollout.sampling.stop))  # fmt: skip
            width = max(len(r.prompt_ids) for r in records)
            responses: dict[int, list[str]] = {}

            def keep_responses(rows: list[dict]) -> None:
                for r in rows:
                    responses.setdefault(r["prompt_index"], []).append(r["response"])

            with Evaluator(cfg, teacher, width, v.max_tokens, self.console) as ev:
                groups, _, _, _ = ev.evaluate(
                    "teacher", records, sampling, pad_id_of(tok), keep_responses
                )
            for j, (i, g) in enumerate(zip(live, groups)):
                answer, share, reason = agreement(g.answers, v.agree)
                if answer is None:
                    why[reason] += 1
                    continue
                first = g.answers.answers.index(answer)  # a solution reaching the majority answer
                kept.append({**pending[i], "ground_truth": answer, "verified_by": "teacher",
                             "agreement": share, "solution": responses[j][first]})  # fmt: skip
        return kept, why, {"teacher": teacher, "teacher_k": v.k}

    def _benchmarks(self) -> list[str]:
        return [*self.lc.decontaminate_against, *self.cfg.data.val_files]

    def filter(self, cands: list[dict]) -> Step:
        """The data engine's dedup and decontaminate steps over the training set (kept first)
        and the candidates; the candidates that survive."""
        if not cands:
            return Step("filter", 0, [], {}, {"skipped": "no candidates"})
        from logics_rl.config.schema import BenchmarkFileConfig, CurateInputConfig
        from logics_rl.curate.pipeline import read_kept, run_curate

        d = self.step_dir
        cand_file = os.path.join(d, "candidates.jsonl")
        write_jsonl(cand_file, [{"question": c["question"], "answer": str(c["ground_truth"])}
                                for c in cands])  # fmt: skip
        fields = {"question": "prompt", "answer": "ground_truth"}
        inputs = [CurateInputConfig(path=p, fields=fields, source="train")
                  for p in self.cfg.data.train_files]  # fmt: skip
        inputs.append(CurateInputConfig(path=cand_file, source=SYNTH))
        benches = [BenchmarkFileConfig(path=p, field="prompt") for p in self._benchmarks()]
        c = self.cfg.curate
        sub = dataclasses.replace(
            c,
            inputs=inputs,
            stages=["dedup", "decontaminate"] if benches else ["dedup"],
            on_bad_row="drop",
            dedup=dataclasses.replace(c.dedup, prefer_sources=["train"]),
            decontaminate=dataclasses.replace(c.decontaminate, benchmarks=benches),
        )
        cfg = dataclasses.replace(self.cfg, curate=sub)
        report = run_curate(cfg, os.path.join(d, "data_engine"), self.console, self.resolve)
        kept_rows = set()
        for batch in read_kept(report["final_step_dir"]).iter_batches(batch_format="pyarrow"):
            for src, row in zip(batch["source"].to_pylist(), batch["row"].to_pylist()):
                if src == SYNTH:
                    kept_rows.add(row - 1)
        dropped = self._synth_drops(os.path.join(d, "data_engine", "curate"))
        rows = [c for i, c in enumerate(cands) if i in kept_rows]
        return Step(
            "filter", len(cands), rows, dict(dropped), {"data_engine": report["final_step_dir"]}
        )

    @staticmethod
    def _synth_drops(root: str) -> Counter:
        """The candidates each data-engine step (``root/NN-step-key``) removed, by reason."""
        import glob

        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        out: Counter[str] = Counter()
        for step_dir in sorted(glob.glob(os.path.join(root, "*", DONE))):
            step_dir = os.path.dirname(step_dir)
            t = pads.dataset(os.path.join(step_dir, "data"), format="parquet").to_table(
                columns=["source", "_drop"]
            )
            t = t.filter(pc.and_(pc.equal(t["source"], SYNTH), pc.is_valid(t["_drop"])))
            out.update(t["_drop"].to_pylist())
        return out

    def mix(self, cands: list[dict]) -> Step:
        """Stage two's RL prompts (``output/rl.jsonl``: ``data.train_files`` plus the kept
        questions) and, from the questions with a worked solution, a continued-SFT set
        (``output/sft.jsonl``: ``sft.train_files`` plus them), each at ``mix_ratio``."""
        out_dir = os.path.join(self.root, "output")
        rl = [
            {"prompt": c["question"], "ground_truth": str(c["ground_truth"]),
             "data_source": c["data_source"],
             "extras": {"synthesized_for": c["failure"], **c.get("info", {})}}
            for c in cands
        ]  # fmt: skip
        train_file, rl_stats, used = self._mixed(
            self.cfg.data.train_files, rl, os.path.join(out_dir, "rl.jsonl")
        )
        sft = [
            {"messages": [{"role": "user", "content": c["question"]},
                          {"role": "assistant", "content": c["solution"]}],
             "data_source": c["data_source"]}
            for c in cands if c.get("solution")
        ]  # fmt: skip
        extra = {"train_file": train_file, **rl_stats}
        if sft:
            sft_file, sft_stats, _ = self._mixed(
                self.cfg.sft.train_files, sft, os.path.join(out_dir, "sft.jsonl")
            )
            extra["sft_file"] = sft_file
            extra.update({f"sft_{k}": v for k, v in sft_stats.items()})
        if not cands:
            self.console.print(
                "[yellow]failure loop: no synthesized question survived; stage two trains on "
                "the original data[/yellow]", highlight=False,
            )  # fmt: skip
        return Step("mix", len(cands), used, {}, extra)

    def _mixed(self, files: list[str], synth: list[dict], path: str):
        """``files``' rows plus ``synth`` rows making ``mix_ratio`` of the result (repeated when
        too few, a sample when too many; all of them when ``files`` is empty), shuffled."""
        ratio = self.lc.mix_ratio
        originals = [r.data for r in iter_files(files)]
        want = round(ratio / (1 - ratio) * len(originals)) if originals else len(synth)
        want = want if synth else 0
        rng = random.Random(self.lc.seed)
        order = list(range(len(synth)))
        rng.shuffle(order)
        used = [synth[order[i % len(order)]] for i in range(want)]
        rows = originals + used
        rng.shuffle(rows)
        write_jsonl(path, rows)
        stats = {
            "original": len(originals), "synthesized": len(synth), "synthesized_used": len(used),
            "repeats": max(0, want - len(synth)), "ratio": len(used) / len(rows) if rows else 0.0,
        }  # fmt: skip
        return path, stats, used


def agreement(answers, agree: float) -> tuple[str | None, float, str]:
    """The teacher's majority answer of one question (``GroupAnswers`` of its k solutions,
    classes by math-verify equivalence) when its share of the k is at least ``agree``; else
    None and why."""
    votes = Counter(c for c in answers.classes if c >= 0)
    if not votes:
        return None, 0.0, "teacher gave no answer"
    top, count = votes.most_common(1)[0]
    share = count / len(answers.classes)
    if share < agree or list(votes.values()).count(count) > 1:
        return None, share, f"teacher agreement below {agree:g}"
    return answers.answers[answers.classes.index(top)], share, ""


def _line(step: Step) -> str:
    drops = ", ".join(f"{k}: {v}" for k, v in step.dropped.items())
    cached = " (cached)" if step.cached else ""
    return (f"failure loop · {step.name}: {step.rows_in} in, {len(step.rows)} out"
            f"{' (' + drops + ')' if drops else ''}{cached}, {step.seconds:.1f}s")  # fmt: skip


def print_report(console: Console, steps: list[Step]) -> None:
    table = Table(title="failure-driven loop")
    for col in ("step", "in", "out", "dropped", "notes"):
        table.add_column(col, justify="right" if col in ("in", "out") else "left")
    for s in steps:
        notes = {k: v for k, v in s.extra.items() if isinstance(v, (int, float, str))}
        table.add_row(
            s.name, str(s.rows_in), str(len(s.rows)),
            ", ".join(f"{k}: {v}" for k, v in s.dropped.items()),
            ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in notes.items()),
        )  # fmt: skip
    console.print(table)
