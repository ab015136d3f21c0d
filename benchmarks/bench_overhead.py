"""The library's overhead over its raw engines, on one RL step's work.

    python benchmarks/bench_overhead.py [--steps 4] [--rounds 2] [overrides...]

1. **library**: ``python -m logics_rl.main --config recipes/smollm2_arith_cpu.yaml`` (Ray, one
   hybrid worker, vLLM CPU + FSDP2, math-verify in its worker process) for ``--steps`` steps,
   with ``rollout.sampling.ignore_eos=true`` so every sample is exactly
   ``rollout.max_response_length`` tokens, one generation round and one mini-batch per step, no
   filters or validation. Its ``time/step`` is the wall time of a step (median over the steps
   after the first).
2. **raw engines**: one process, no Ray, the same engines built by the same factories from the
   same config: vLLM generates the same prompts (the first ``prompts_per_step`` rows of the run's
   training file, rendered by the same loader) x ``rollout.n`` samples of the same fixed length,
   the train engine runs one ``train_step`` on them (the same PPO-clip loss, the entropy computed
   as the actor does at every update), and the weights go back through ``update_weights``.
   Nothing else: no reward, no parity probe, no dispatch.

Each round runs both sides as separate processes, in alternating order ((library, raw), then
(raw, library), ...), so both see the same machine drift; the medians pool every round's steps
after the first. Nothing samples the processes while they run (see ``common.TreeSampler``).

Overhead = library step / (generate + train step + weight sync) - 1: what Ray dispatch, batch
transfer, scoring, advantages, the parity probe and the loop's bookkeeping add.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine, single_process_world, today  # noqa: E402
from compare_trl import RECIPE, run_logged  # noqa: E402

COMMON = [
    "trainer.dynamic_sampling.max_gen_batches=1",
    "trainer.mini_batches_per_step=1",
    "trainer.loggers=[jsonl]",
    "trainer.progress=false",
    "trainer.plot=false",
    "trainer.resume=never",
    "trainer.save_every=0",
    "filters=[]",
    "validation.at_start=false",
    "validation.at_end=false",
    "validation.every=0",
    "rollout.sampling.ignore_eos=true",
]


def library(a, run_dir: Path) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "logics_rl.main", "--config", str(RECIPE)]
    cmd += [f"trainer.run_dir={run_dir}", f"trainer.total_steps={a.steps}", *COMMON, *a.overrides]
    # no memory sampling: reading the tree's PSS every second stalls the worker (common.py)
    run_logged(cmd, run_dir.with_suffix(".log"), dict(os.environ), memory=False)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "time/step" in r][1:]
    keys = ("step", "generate", "reward", "old_logp", "advantages", "update", "sync", "other")
    out = {k: [r.get(f"time/{k}", 0.0) for r in steps] for k in keys}
    # the update's own time in the worker (time/update adds dispatch and transfer)
    out["update_worker"] = [r.get("actor/update/seconds", 0.0) for r in steps]
    return out


def raw(a, run_dir: Path) -> dict:
    """The engines alone (run in a child process: ``--raw RUN_DIR``)."""
    import torch
    from bench_update import make_batch

    from logics_rl.batches import TrainBatch
    from logics_rl.config.loader import load_config
    from logics_rl.data.prompts import load_prompts
    from logics_rl.engines.rollout import Sampling, build_rollout_engine
    from logics_rl.engines.train import build_train_engine
    from logics_rl.workers.actor import ActorRole, UpdateSpec

    cfg = load_config(str(RECIPE), [f"trainer.run_dir={run_dir}", *COMMON, *a.overrides])
    torch.set_num_threads(int(cfg.cluster.cpus_per_proc))
    single_process_world()
    from logics_rl.trainer.setup import resolve_model

    path = resolve_model(cfg, str(run_dir))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    records, _ = load_prompts(
        [str(run_dir / "data" / "rl_train.jsonl")], tok,
        max_prompt_length=cfg.data.max_prompt_length, system_prompt=cfg.data.system_prompt,
    )  # fmt: skip
    records = records[: cfg.trainer.prompts_per_step]
    r = cfg.rollout
    width = max(len(x.prompt_ids) for x in records)
    vllm = build_rollout_engine(r, path, max_model_len=width + r.max_response_length, seed=0)
    eng = build_train_engine(cfg.actor, path, total_steps=100)
    actor = ActorRole(eng, UpdateSpec(cfg.algorithm))
    samp = Sampling(n=r.n, temperature=r.sampling.temperature, max_tokens=r.max_response_length,
                    ignore_eos=True)  # fmt: skip
    times: dict[str, list[float]] = {"generate": [], "update": [], "sync": []}
    for _ in range(a.steps):
        t0 = time.perf_counter()
        g = vllm.generate([x.prompt_ids for x in records], samp)
        t1 = time.perf_counter()
        n, R = len(g.response_ids), r.max_response_length
        ids = torch.full((n, width), tok.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros(n, width, dtype=torch.bool)
        for i in range(n):
            p = records[i // r.n].prompt_ids
            ids[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), True
        full = torch.ones(n, R, dtype=torch.bool)  # ignore_eos: every sample is R tokens
        b = make_batch(eng.hf_config.vocab_size, n, 40 + R).with_columns(
            {"prompt_ids": ids, "prompt_mask": mask, "response_ids": torch.tensor(g.response_ids),
             "response_mask": full, "loss_mask": full, "rollout_logp": torch.tensor(g.logprobs)}
        )  # fmt: skip
        # the entropy too: the actor computes it at every update (workers/actor.py)
        loss_fn = actor._loss_fn(b, TrainBatch(b).behaviour)
        eng.train_step(b, loss_fn, temperature=1.0, needs_entropy=True)
        t2 = time.perf_counter()
        vllm.update_weights(eng.named_parameters_for_export())
        t3 = time.perf_counter()
        times["generate"].append(t1 - t0)
        times["update"].append(t2 - t1)
        times["sync"].append(t3 - t2)
    return {k: v[1:] for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4, help="steps per side; the first is warm-up")
    ap.add_argument("--rounds", type=int, default=2, help="library / raw runs, order alternated")
    ap.add_argument("--workdir", default=str(HERE / ".overhead-runs"))
    ap.add_argument("--raw", default=None, help=argparse.SUPPRESS)  # child: engines alone
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    a = ap.parse_args()
    if a.raw:
        print(json.dumps(raw(a, Path(a.raw))))
        return
    lib: dict[str, list[float]] = {}
    eng: dict[str, list[float]] = {}

    def add(into: dict, got: dict) -> None:
        for k, v in got.items():
            into.setdefault(k, []).extend(v)

    def run_raw(run_dir: Path) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--steps", str(a.steps), "--raw", str(run_dir),
             *a.overrides],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    # alternate the order (library, raw), (raw, library), ...: both see the same machine drift;
    # the raw side reads the prompts the library's last run wrote
    last = None
    for r in range(a.rounds):
        run_dir = Path(a.workdir) / f"library-{r}"
        if r % 2 == 0:
            add(lib, library(a, run_dir))
            add(eng, run_raw(run_dir))
        else:
            add(eng, run_raw(last))
            add(lib, library(a, run_dir))
        last = run_dir
    per_round = [f"{x:.1f}" for x in lib["step"]]
    raw_steps = [f"{sum(x):.1f}" for x in zip(eng["generate"], eng["update"], eng["sync"])]
    lib = {k: statistics.median(v) for k, v in lib.items()}
    eng = {k: statistics.median(v) for k, v in eng.items()}
    total = eng["generate"] + eng["update"] + eng["sync"]
    print(f"machine: {machine()}; date {today()}")
    print(f"work: {RECIPE.name} + {' '.join(a.overrides) or 'no overrides'}; {a.rounds} rounds, "
          f"order alternated; median over the rounds' steps 2..{a.steps}")  # fmt: skip
    print(f"step times: library {' '.join(per_round)}; raw {' '.join(raw_steps)}")
    print("| phase | library (s) | raw engines (s) |")
    print("|---|---:|---:|")
    for k in ("generate", "update", "sync"):
        print(f"| {k} | {lib[k]:.2f} | {eng[k]:.2f} |")
    print(f"| (update inside the worker) | {lib['update_worker']:.2f} | - |")
    rest = lib["step"] - lib["generate"] - lib["update"] - lib["sync"]
    print(f"| reward, advantages, other | {rest:.2f} | - |")
    print(f"| **step** | **{lib['step']:.2f}** | **{total:.2f}** |")
    print(f"overhead: {lib['step'] / total - 1:+.1%}")


if __name__ == "__main__":
    main()
