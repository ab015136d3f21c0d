"""The RL trainer end to end on CPU: real Ray, FSDP2 over gloo, the HF and vLLM rollout engines.

- GRPO raises a trivially learnable reward (the share of ``a`` characters in the response) with
  both rollout engines;
- dynamic sampling draws extra generation batches until ``prompts_per_step`` groups survive the
  filters, up to ``max_gen_batches``; then it trains on what was kept (``on_cap=train``) or stops
  (``on_cap=stop``), checked step by step against a replay of the prompt sampler;
- a run killed mid-step and resumed from its last checkpoint logs exactly the metrics of an
  uninterrupted run (HF engine, across epochs of a small train set, with refills);
- the rollout engine's log-probs can stand in for recomputed behaviour log-probs
  (``algorithm.old_log_prob=rollout``) and give the same updates where the engines agree;
- a crash while a checkpoint is being written leaves the previous one the latest and usable;
- the HF export of a checkpoint loads in transformers and vLLM with the trained engine's log-probs.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

from logics_rl.config.loader import load_config
from logics_rl.data.files import write_jsonl
from logics_rl.data.sampler import EpochSampler
from logics_rl.errors import TrainingError
from logics_rl.filters import FILTERS, FilterDecision, Group
from logics_rl.protocol import Batch
from logics_rl.rewards import REWARDS, RewardInput, RewardResult
from logics_rl.tracking import read_metrics
from logics_rl.trainer.rl import RLTrainer
from logics_rl.trainer.setup import prepare_run_dir, resolve_data
from logics_rl.trainer.stages import run

pytestmark = pytest.mark.integration

# Keys whose values are measurements of the process (wall clock, memory): everything else must
# repeat exactly. Durations outside time/ end in /seconds (weight_sync/seconds,
# actor/update/seconds).
TIMING = ("time/", "throughput/", "memory/")


# --------------------------------------------------------------------------- plugins of the tests
@REWARDS.register("test_letter_a", overwrite=True)
def letter_a(batch: RewardInput) -> RewardResult:
    """The share of ``a`` characters in the response: learnable from any random policy."""
    s = [r.count("a") / len(r) if r else 0.0 for r in batch.responses]
    return RewardResult(scores=s, components={"a_share": s})


class SimulatedCrash(BaseException):
    """The driver dies (not an ``Exception``: a failing reward term would be scored 0). The term
    runs in-process (``isolate: false``): isolated, its crash would cost one batch, not the run."""


CRASH = {"calls": 0, "at": 0}


@REWARDS.register("test_letter_a_crashing", overwrite=True)
def letter_a_crashing(batch: RewardInput) -> RewardResult:
    """``letter_a`` until its ``CRASH["at"]``-th call, which kills the run."""
    CRASH["calls"] += 1
    if CRASH["calls"] == CRASH["at"]:
        raise SimulatedCrash(f"reward call {CRASH['calls']}")
    return letter_a(batch)


@REWARDS.register("test_answer_value", overwrite=True)
def answer_value(batch: RewardInput) -> RewardResult:
    """A score fixed by the prompt (its answer / 100), so reward metrics can be hand-computed."""
    s = [int(g) / 100 for g in batch.ground_truths]
    return RewardResult(scores=s, components={"answer_value": s})


@FILTERS.register("test_keep_subtraction", overwrite=True)
def keep_subtraction(group: Group) -> FilterDecision:
    """Drop the groups of addition prompts: which groups survive is known from the data alone."""
    if "+" in group.prompt:
        return FilterDecision(keep_group=False, reason="addition")
    return FilterDecision(keep_group=True)


# --------------------------------------------------------------------------- helpers
def arithmetic_rows(problems: list[tuple[int, str, int]]) -> list[dict]:
    out = []
    for a, op, b in problems:
        answer = a + b if op == "+" else a - b
        prompt = f"Compute {a}{op}{b}. Put the final answer in \\boxed{{}}."
        out.append({"prompt": prompt, "ground_truth": str(answer), "data_source": f"op{op}"})
    return out


def rl_overrides(run_dir: str, model: str, **kw) -> list[str]:
    """A tiny RL run: few prompts, short responses, no progress bar."""
    settings = {
        "mode": "rl",
        "model.path": model,
        "data.max_prompt_length": 128,
        "rollout.n": 4,
        "rollout.max_response_length": 8,
        "validation.k": 2,
        "rollout.engine": "hf",
        "rollout.vllm.kv_cache_gb": 0.05,
        "reward.terms": "[{name: test_letter_a}]",
        "actor.optim.lr": 1e-2,
        "trainer.prompts_per_step": 2,
        "trainer.total_steps": 6,
        "trainer.progress": False,
        "trainer.seed": 0,
        "trainer.run_dir": run_dir,
        "cluster.call_timeout_s": 600,
    }
    settings.update({k.replace("__", "."): v for k, v in kw.items()})
    return [f"{k}={v}" for k, v in settings.items()]


def run_rl(overrides: list[str]) -> tuple[list[dict], str]:
    """Run the pipeline in mode ``rl``; returns (metrics rows, console text)."""
    out = io.StringIO()
    cfg = load_config(None, overrides)
    run(cfg, Console(file=out, width=200))
    return read_metrics(os.path.join(cfg.trainer.run_dir, "metrics.jsonl")), out.getvalue()


def step_rows(rows: list[dict]) -> dict[int, dict]:
    """Training-step rows by step (validation-only rows have no ``batch/gen_rounds``)."""
    return {r["step"]: r for r in rows if "batch/gen_rounds" in r}


def untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if not (k.startswith(TIMING) or k.endswith("/seconds"))}


def assert_rows_equal(got: list[dict], want: list[dict]) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        g, w = untimed(g), untimed(w)
        assert g.keys() == w.keys(), f"step {w['step']}: keys differ {g.keys() ^ w.keys()}"
        for k in w:
            if w[k] is None or g[k] is None:
                assert g[k] == w[k], (w["step"], k)
            else:
                assert abs(g[k] - w[k]) <= 1e-6, (w["step"], k, g[k], w[k])


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


@pytest.fixture(scope="module")
def untied_model(tmp_path_factory) -> str:
    """The tiny Qwen3 with an untied LM head (like Qwen3-8B and larger) for the HF-engine runs;
    the vLLM run uses the tied one (the quickstart's): weight sync, checkpoints and export are
    exercised with both layouts."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from logics_rl.models.tiny import TinySize, build_tiny_qwen3

    tied = build_tiny_qwen3(str(tmp_path_factory.mktemp("tied")), TinySize(max_positions=256))
    src = AutoModelForCausalLM.from_pretrained(tied)
    src.config.tie_word_embeddings = False
    model = AutoModelForCausalLM.from_config(src.config)
    state = src.state_dict()
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    model.load_state_dict(state, strict=True)
    model.generation_config = src.generation_config
    out = str(tmp_path_factory.mktemp("untied"))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tied).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def letters_data(tmp_path_factory) -> SimpleNamespace:
    """Six train prompts (an epoch every one to three steps) and two validation prompts."""
    d = tmp_path_factory.mktemp("letters_data")
    train = arithmetic_rows([(3, "+", 4), (9, "-", 2), (1, "+", 1), (8, "-", 5), (6, "+", 2)])
    train += arithmetic_rows([(7, "-", 7)])
    val = arithmetic_rows([(2, "+", 5), (6, "-", 1)])
    write_jsonl(str(d / "train.jsonl"), train)
    write_jsonl(str(d / "val.jsonl"), val)
    return SimpleNamespace(train=str(d / "train.jsonl"), val=str(d / "val.jsonl"))


def letters_overrides(run_dir: str, model: str, data: SimpleNamespace, **kw) -> list[str]:
    """GRPO with DAPO dynamic sampling (zero-variance filter, up to 2 generation batches)."""
    return rl_overrides(
        run_dir,
        model,
        data__train_files=f"[{data.train}]",
        data__val_files=f"[{data.val}]",
        filters="[{name: zero_variance, params: {metric: score}}]",
        trainer__dynamic_sampling__max_gen_batches=2,
        trainer__save_every=3,
        **kw,
    )


@pytest.fixture(scope="module")
def hf_reference(ray_cluster, untied_model, letters_data, tmp_path_factory) -> list[dict]:
    """An uninterrupted 6-step run with the (deterministic) HF rollout engine."""
    run_dir = str(tmp_path_factory.mktemp("hf_reference"))
    rows, _ = run_rl(letters_overrides(run_dir, untied_model, letters_data))
    return rows


# --------------------------------------------------------------------------- learning
def test_grpo_raises_an_easy_reward_with_the_hf_engine(hf_reference):
    steps = step_rows(hf_reference)
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    reward = [steps[s]["reward/mean"] for s in range(1, 7)]
    # a random policy over ~100 characters writes "a" about 1% of the time (sd ~0.01 here)
    assert mean(reward[:2]) < 0.05, reward
    assert mean(reward[-2:]) > mean(reward[:2]) + 0.15, reward
    # the weight-sync probe held after every update (fp32 tolerance)
    updated = [s for s in steps if "actor/pg_loss" in steps[s]]
    assert len(updated) >= 4, updated
    assert all(steps[s]["weight_sync/probe_abs_diff_max"] <= 1e-3 for s in updated)
    # the worker's peak memory so far: never shrinks, and a process with torch loaded is >0.1 GB
    peaks = [steps[s]["memory/worker_peak_rss_gb_max"] for s in sorted(updated)]
    assert peaks == sorted(peaks) and 0.1 < peaks[0] < 64, peaks
    # a step's wall time covers its phases
    for s in updated:
        names = ("generate", "reward", "old_logp", "ref_logp", "advantages", "update", "sync")
        phases = sum(steps[s][f"time/{n}"] for n in names)
        assert steps[s]["time/step"] == pytest.approx(phases + steps[s]["time/other"], abs=1e-6)
    # validation at start (step 0) and at the end (step 6)
    val = [r for r in hf_reference if "val/avg@k" in r]
    assert [r["step"] for r in val] == [0, 6] and all(r["val/prompts"] == 2 for r in val)


def test_rollout_log_probs_as_the_behaviour_policy(
    ray_cluster, untied_model, letters_data, tmp_path
):
    """Two mini-batches per step need behaviour log-probs. ``old_log_prob=rollout`` takes the
    sampler's instead of recomputing them; in fp32 on CPU the two agree, so both runs see the
    same samples and make the same updates."""
    runs = {}
    for source in ("recompute", "rollout"):
        rows, _ = run_rl(
            rl_overrides(
                str(tmp_path / source),
                untied_model,
                data__train_files=f"[{letters_data.train}]",
                data__val_files=f"[{letters_data.val}]",
                trainer__total_steps=2,
                trainer__prompts_per_step=4,
                trainer__mini_batches_per_step=2,
                rollout__max_response_length=16,
                algorithm__old_log_prob=source,
            )
        )
        runs[source] = step_rows(rows)
    recompute, rollout = runs["recompute"], runs["rollout"]
    assert sorted(recompute) == sorted(rollout) == [1, 2]
    for s in (1, 2):
        assert recompute[s]["mismatch/abs_diff_max"] <= 1e-4  # the premise: engines agree here
        assert not any(k.startswith("mismatch/") for k in rollout[s])  # no recompute, no measure
        assert rollout[s]["actor/optimizer_steps"] == recompute[s]["actor/optimizer_steps"] == 2
        assert rollout[s]["reward/mean"] == recompute[s]["reward/mean"]
        assert recompute[s]["actor/grad_norm"] > 0  # a real update to compare
        for k in ("actor/pg_loss", "actor/grad_norm", "actor/ppo_kl", "actor/ratio_max"):
            assert abs(rollout[s][k] - recompute[s][k]) <= 1e-4, (
                s,
                k,
                rollout[s][k],
                recompute[s][k],
            )


# --------------------------------------------------------------------------- resume
def test_resume_after_a_crash_repeats_the_uninterrupted_run(
    hf_reference, untied_model, letters_data, tmp_path
):
    """Killed while scoring step 5 (checkpoint at step 3), then resumed with ``resume=auto``.

    Six prompts and 2-4 drawn per step: the resumed steps cross epochs of the prompt sampler,
    and refills (``batch/gen_rounds`` 2) happen on both sides of the checkpoint.
    """
    ref = step_rows(hf_reference)
    rounds = [int(ref[s]["batch/gen_rounds"]) for s in range(1, 7)]
    assert 2 in rounds[:3] and 2 in rounds[3:], rounds  # the refill is part of what is resumed
    draws = 2 * sum(rounds)
    assert draws > 2 * 6, draws  # several epochs of the six prompts
    run_dir = str(tmp_path / "run")
    # reward calls: validation at start, then one per generation batch; crash in step 5
    CRASH.update(calls=0, at=1 + sum(rounds[:4]) + 1)
    crashing = letters_overrides(
        run_dir,
        untied_model,
        letters_data,
        reward__terms="[{name: test_letter_a_crashing, isolate: false}]",
    )
    with pytest.raises(SimulatedCrash):
        run_rl(crashing)
    logged = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    assert sorted(step_rows(logged)) == [1, 2, 3, 4]  # step 4 was logged, then lost
    assert os.listdir(os.path.join(run_dir, "checkpoints")) == ["step_3"]

    CRASH.update(calls=0, at=0)
    rows, console = run_rl(letters_overrides(run_dir, untied_model, letters_data))
    assert "at step 3" in console
    assert_rows_equal(rows, hf_reference)  # steps 0-3 kept, step 4 superseded, 4-6 recomputed
    with open(os.path.join(run_dir, "summary.json")) as fh:
        summary = json.load(fh)
    want = {k: v for k, v in hf_reference[0].items() if k.startswith("val/") and "@k" in k}
    assert want and {k: summary["initial policy"][k] for k in want} == want  # restored after resume


def test_a_failed_start_releases_the_cluster(ray_cluster, untied_model, letters_data, tmp_path):
    """The weight-sync probe fails at start (a bfloat16 rollout engine held to a 1e-9 tolerance
    against the float32 actor): the error names it, and the pool's CPUs are free again for the
    next run on the same Ray cluster."""
    from logics_rl.workers.weight_sync import WeightSyncError

    def live_groups() -> set[str]:
        table = ray_cluster.util.placement_group_table()
        return {pg for pg, info in table.items() if info["state"] != "REMOVED"}

    # an earlier test's group may still be on its way out: this run's own groups are what count
    before = live_groups()
    free = ray_cluster.available_resources().get("CPU", 0.0)
    overrides = letters_overrides(
        str(tmp_path),
        untied_model,
        letters_data,
        rollout__dtype="bfloat16",
        rollout__weight_sync__probe_tol=1e-9,
    )
    with pytest.raises(WeightSyncError, match="weight-sync parity probe failed on rank 0"):
        run_rl(overrides)
    deadline = time.monotonic() + 30
    while (live_groups() - before or ray_cluster.available_resources().get("CPU", 0.0) < free) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert live_groups() - before == set()  # every group the run created is removed
    assert ray_cluster.available_resources().get("CPU", 0.0) >= free


# --------------------------------------------------------------------------- dynamic sampling
# 2 subtraction prompts among 6, 2 prompts per step, at most 2 generation batches: with the
# sampler's seed 0 the four steps are: filled in one batch, nothing kept (the update is skipped),
# capped with one group kept (trained on), filled by a refill.
DS_PROBLEMS = [(3, "+", 4), (1, "+", 1), (9, "-", 2), (8, "-", 5), (6, "+", 2), (5, "+", 3)]
DS_CAP = 2


def replay_dynamic_sampling(ops: list[str], values: list[float], target: int, cap: int, steps):
    """What the refill loop must do, from the sampler and the data alone."""
    sampler = EpochSampler(len(ops), seed=0)
    out = []
    for step in range(1, steps + 1):
        kept = rounds = 0
        drawn: list[int] = []
        while kept < target and rounds < cap:
            rounds += 1
            idx = sampler.take(target)
            drawn += idx
            kept += sum(ops[i] == "-" for i in idx)
        out.append(
            {
                "step": step,
                "rounds": rounds,
                "kept": min(kept, target),
                "dropped": sum(ops[i] == "+" for i in drawn),
                "subtractions": sum(ops[i] == "-" for i in drawn),
                "reward_mean": mean(values[i] for i in drawn),
                "reward_max": max(values[i] for i in drawn),
                "reward_min": min(values[i] for i in drawn),
            }
        )
    return out


@pytest.fixture(scope="module")
def ds_data(tmp_path_factory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("ds_data")
    rows = arithmetic_rows(DS_PROBLEMS)
    write_jsonl(str(d / "train.jsonl"), rows)
    ops = [op for _, op, _ in DS_PROBLEMS]
    values = [int(r["ground_truth"]) / 100 for r in rows]
    return SimpleNamespace(path=str(d / "train.jsonl"), ops=ops, values=values)


def ds_overrides(run_dir, model, data, on_cap: str, steps: int) -> list[str]:
    return rl_overrides(
        run_dir,
        model,
        data__train_files=f"[{data.path}]",
        reward__terms="[{name: test_answer_value}]",
        filters="[{name: test_keep_subtraction}]",
        rollout__n=2,
        rollout__max_response_length=4,
        trainer__total_steps=steps,
        validation__at_start=False,
        validation__at_end=False,
        trainer__plot=False,
        trainer__dynamic_sampling__max_gen_batches=DS_CAP,
        trainer__dynamic_sampling__on_cap=on_cap,
    )


def test_refill_then_train_on_what_was_kept(ray_cluster, untied_model, ds_data, tmp_path):
    want = replay_dynamic_sampling(ds_data.ops, ds_data.values, target=2, cap=DS_CAP, steps=4)
    assert [(w["rounds"], w["kept"]) for w in want] == [(1, 2), (2, 0), (2, 1), (2, 2)]
    rows, console = run_rl(ds_overrides(str(tmp_path), untied_model, ds_data, "train", 4))
    got = step_rows(rows)
    assert sorted(got) == [1, 2, 3, 4]
    for w in want:
        g = got[w["step"]]
        assert g["batch/gen_rounds"] == w["rounds"], w
        assert g["batch/kept_groups"] == w["kept"], w
        assert g["filter/kept_groups"] == w["subtractions"], w
        assert g["filter/dropped_groups"] == w["dropped"], w
        assert g.get("filter/test_keep_subtraction/addition", 0.0) == w["dropped"], w
        # over every generated sample of every round of the step
        assert g["reward/mean"] == pytest.approx(w["reward_mean"], abs=1e-6), w
        assert g["reward/score_max"] == pytest.approx(w["reward_max"], abs=1e-6), w
        assert g["reward/score_min"] == pytest.approx(w["reward_min"], abs=1e-6), w
        if w["kept"]:
            assert g["batch/samples"] == 2 * w["kept"], w  # the kept groups, n = 2 each
            assert g["actor/optimizer_steps"] == 1.0, w
        else:
            assert "batch/samples" not in g and "actor/pg_loss" not in g, w
        capped = f"step {w['step']}: only {w['kept']}/2 prompt groups survived the filters"
        assert (capped in console) == (w["kept"] < 2), w
    assert console.count("trainer.dynamic_sampling.max_gen_batches") == 2
    assert "training on what was kept" in console and "skipping the update" in console


def test_refill_cap_stops_the_run_when_asked(ray_cluster, untied_model, ds_data, tmp_path):
    want = replay_dynamic_sampling(ds_data.ops, ds_data.values, target=2, cap=DS_CAP, steps=4)
    first = next(w for w in want if w["kept"] < 2)
    with pytest.raises(TrainingError) as info:
        run_rl(ds_overrides(str(tmp_path), untied_model, ds_data, "stop", 4))
    msg = str(info.value)
    assert f"step {first['step']}: only {first['kept']}/2 prompt groups" in msg
    assert f"after {DS_CAP} generation batches" in msg
    assert "trainer.dynamic_sampling.max_gen_batches" in msg and "on_cap=stop" in msg
    rows = read_metrics(str(tmp_path / "metrics.jsonl"))
    assert sorted(step_rows(rows)) == list(range(1, first["step"]))


# --------------------------------------------------------------------------- vLLM, export, crash
PROBE_TEXTS = [
    ("Compute 3+4. Put the final answer in \\boxed{}.", "aaa \\boxed{7}"),
    ("Compute 9-2. Put the final answer in \\boxed{}.", "a b a 7"),
]


def probe_batch(tokenizer) -> tuple[Batch, list[list[int]]]:
    prompts, responses = [], []
    for q, a in PROBE_TEXTS:
        msgs = [{"role": "user", "content": q}]
        p = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        prompts.append(tokenizer(p, add_special_tokens=False)["input_ids"])
        responses.append(tokenizer(a, add_special_tokens=False)["input_ids"])
    P, R = max(map(len, prompts)), max(map(len, responses))
    pid = torch.zeros(len(prompts), P, dtype=torch.long)
    pm = torch.zeros(len(prompts), P, dtype=torch.bool)
    rid = torch.zeros(len(prompts), R, dtype=torch.long)
    rm = torch.zeros(len(prompts), R, dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        pid[i, P - len(p) :], pm[i, P - len(p) :] = torch.tensor(p), True
        rid[i, : len(r)], rm[i, : len(r)] = torch.tensor(r), True
    batch = Batch.from_dict(
        {"prompt_ids": pid, "prompt_mask": pm, "response_ids": rid, "response_mask": rm},
        meta={"temperature": 1.0},
    )
    return batch, [p + r for p, r in zip(prompts, responses)]


@pytest.fixture(scope="module")
def vllm_run(ray_cluster, tiny_model, letters_data, tmp_path_factory) -> SimpleNamespace:
    """Eight GRPO steps with the vLLM engine on the tied tiny model (validation at start only);
    then, with the workers still up: the trained engine's log-probs on two fixed sequences, and a
    save that crashes midway."""
    run_dir = str(tmp_path_factory.mktemp("vllm_run"))
    overrides = rl_overrides(
        run_dir,
        tiny_model,
        data__train_files=f"[{letters_data.train}]",
        data__val_files=f"[{letters_data.val}]",
        rollout__engine="vllm",
        actor__optim__lr=2e-2,  # the tied embedding learns slower than the untied HF runs
        trainer__total_steps=8,
        trainer__prompts_per_step=4,
        validation__at_end=False,
        trainer__keep_last=1,
    )
    cfg = load_config(None, overrides)
    cfg = resolve_data(cfg, prepare_run_dir(cfg))
    trainer = RLTrainer(cfg, tiny_model, run_dir, Console(file=io.StringIO()))
    try:
        final = trainer.fit()
        batch, sequences = probe_batch(trainer.tokenizer)
        logp = trainer.workers.compute_log_prob(batch)["logp"]
        trained = [logp[i, : int(batch["response_mask"][i].sum())] for i in range(len(batch))]
        ckpt = trainer.state.ckpt
        before = ckpt.latest()

        def write_then_fail(tmp: str) -> None:
            trainer.workers.save_checkpoint(tmp)  # the real, complete engine state ...
            raise OSError("Input/output error")  # ... but the run dies before the marker

        try:
            ckpt.save(trainer.state.step + 1, write_then_fail)
            crash = None
        except OSError as exc:
            crash = exc
        after = ckpt.latest()
        listing = sorted(os.listdir(ckpt.root))
    finally:
        trainer.shutdown()
    return SimpleNamespace(
        rows=read_metrics(os.path.join(run_dir, "metrics.jsonl")),
        final=final,
        initial=trainer.initial_val,
        batch=batch,
        sequences=sequences,
        trained=trained,
        before=before,
        after=after,
        crash=crash,
        listing=listing,
        run_dir=run_dir,
    )


def test_grpo_raises_an_easy_reward_with_vllm(vllm_run):
    steps = step_rows(vllm_run.rows)
    assert sorted(steps) == list(range(1, 9))
    reward = [steps[s]["reward/mean"] for s in range(1, 9)]
    assert mean(reward[:2]) < 0.05, reward
    assert mean(reward[-2:]) > mean(reward[:2]) + 0.15, reward
    for s, r in steps.items():
        assert r["weight_sync/probe_abs_diff_max"] <= 1e-3, (s, r)
        assert r["batch/samples"] == 16 and r["batch/gen_rounds"] == 1
    assert os.path.exists(os.path.join(vllm_run.run_dir, "curves.png"))
    # validated at start only: no "after" numbers (they are not the start's numbers again)
    assert vllm_run.initial["val/prompts"] == 2 and vllm_run.final == {}
    assert [r["step"] for r in vllm_run.rows if "val/avg@k" in r] == [0]


def test_crash_while_saving_keeps_the_previous_checkpoint(vllm_run, tmp_path):
    from logics_rl.checkpoint import COMPLETE
    from logics_rl.engines.train import export_checkpoint

    assert isinstance(vllm_run.crash, OSError)
    assert (
        vllm_run.before
        == vllm_run.after
        == os.path.join(os.path.dirname(vllm_run.before), "step_8")
    )
    # keep_last=1: only the final checkpoint; the partial one was removed
    assert vllm_run.listing == ["step_8"]
    assert not os.path.exists(os.path.join(os.path.dirname(vllm_run.before), "step_9"))
    assert os.path.exists(os.path.join(vllm_run.after, COMPLETE))
    # the previous checkpoint is still whole: it exports
    assert os.path.exists(
        os.path.join(export_checkpoint(vllm_run.after, str(tmp_path)), "config.json")
    )


def test_eval_mode_on_a_checkpoint_of_the_run(vllm_run, letters_data, tmp_path):
    """``mode: eval`` takes the run's checkpoint as model.path (verified, exported), and measures
    the reward the run learned (``a_share`` starts below 0.05)."""
    ckpt = os.path.join(vllm_run.run_dir, "checkpoints", "step_8")
    out = io.StringIO()
    cfg = load_config(
        None,
        rl_overrides(
            str(tmp_path),
            ckpt,
            mode="eval",
            rollout__engine="vllm",
            eval__k=8,
            eval__files=f"[{{path: {letters_data.val}, name: letters}}]",
        ),
    )
    run(cfg, Console(file=out, width=200))
    assert os.path.exists(os.path.join(tmp_path, "model_from_step_8", "config.json"))
    with open(os.path.join(tmp_path, "summary.json"), encoding="utf-8") as fh:
        summary = json.load(fh)
    m = summary["letters"]["all"]
    assert m["prompts"] == 2 and m["k"] == 8 and m["response_length/max"] <= 8
    assert m["reward/a_share"] > 0.1, m
    # no ``correct`` component: a sample is right when its score is positive
    with open(summary["letters"]["samples"], encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    assert m["avg@8"] == pytest.approx(sum(r["rewards"]["a_share"] > 0 for r in rows) / 16)


VLLM_SCRIPT = """
import json, os, sys
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
from vllm import LLM, SamplingParams
path, seqs = sys.argv[1], json.loads(sys.argv[2])
llm = LLM(model=path, dtype="float32", enforce_eager=True, max_model_len=256,
          kv_cache_memory_bytes=64 << 20, seed=0)
outs = llm.generate([{"prompt_token_ids": s} for s in seqs],
                    SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
print("LOGPROBS=" + json.dumps([[d[t].logprob for d, t in zip(o.prompt_logprobs[1:], s[1:])]
                                for o, s in zip(outs, seqs)]))
"""


def test_hf_export_matches_the_trained_engine_in_transformers_and_vllm(
    vllm_run, tiny_model, tmp_path
):
    from transformers import AutoModelForCausalLM

    from logics_rl.export import main as export_main

    out = str(tmp_path / "hf")
    export_main([vllm_run.after, out])
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert model.config.tie_word_embeddings  # the tied tiny model stays tied
    batch = vllm_run.batch
    for i, seq in enumerate(vllm_run.sequences):
        n = int(batch["response_mask"][i].sum())
        ids = torch.tensor([seq])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].float(), -1)
        ref = logp[:-1].gather(-1, ids[0, 1:, None])[:, 0][-n:]
        torch.testing.assert_close(ref, vllm_run.trained[i], atol=1e-5, rtol=0)
    # ... and that policy is the trained one, not the initial weights
    init = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        ids = torch.tensor([vllm_run.sequences[0]])
        moved = (init(ids).logits - model(ids).logits).abs().max()
    assert moved > 0.1, float(moved)
    proc = subprocess.run(
        [sys.executable, "-c", VLLM_SCRIPT, out, json.dumps(vllm_run.sequences)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LOGPROBS="))
    vllm_lp = json.loads(line[len("LOGPROBS=") :])
    for i in range(len(vllm_run.sequences)):
        n = int(batch["response_mask"][i].sum())
        got = torch.tensor(vllm_lp[i][-n:])
        torch.testing.assert_close(got, vllm_run.trained[i], atol=1e-3, rtol=0)
