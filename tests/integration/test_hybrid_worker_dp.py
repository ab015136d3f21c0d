"""The hybrid worker with the HF rollout engine (cheap to build): on two data-parallel ranks
(FSDP2 over gloo), prompts that do not divide by the ranks (DP padding must not leak extra
samples), train/rollout parity across ranks, and an update followed by a verified weight sync;
on one rank, a bf16 rollout engine next to the fp32 train engine (the probe's tolerance)."""

from __future__ import annotations

import sys

import pytest
import torch

from logics_rl.config.schema import OptimConfig, RolloutEngineConfig, TrainEngineConfig
from logics_rl.controller import ResourcePool, WorkerGroup
from logics_rl.engines.rollout.base import Sampling
from logics_rl.protocol import Batch
from logics_rl.workers.actor import rollout_mismatch
from logics_rl.workers.hybrid import HybridSpec, HybridWorker

pytestmark = pytest.mark.integration

N = 3  # samples per prompt
SAMPLING = Sampling(n=N, temperature=0.9, max_tokens=8)


@pytest.fixture(scope="module", autouse=True)
def _by_value(ray_cluster):
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def group(ray_cluster, tiny_model):
    spec = HybridSpec(
        model_path=tiny_model,
        train=TrainEngineConfig(optim=OptimConfig(lr=1e-3)),
        rollout=RolloutEngineConfig(engine="hf", probe_sequences=2, probe_length=16),
        max_model_len=64,
        seed=0,
    )
    pool = ResourcePool([2])
    workers = WorkerGroup(pool, HybridWorker, spec, timeout_s=300)
    init = workers.init_model()
    assert len(init) == 2
    assert all(0 <= m["weight_sync/probe_max_abs_diff"] <= 1e-3 for m in init)
    yield workers
    workers.kill()
    pool.remove()


def prompt_batch(lengths: list[int]) -> Batch:
    """Left-padded prompts of the given lengths, uid = row, as ``data.prompts.to_batch`` lays out."""
    width = max(lengths)
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.bool)
    for i, n in enumerate(lengths):
        ids[i, width - n :] = torch.randint(5, 100, (n,), generator=g)
        mask[i, width - n :] = True
    batch = Batch.from_dict(
        {"prompt_ids": ids, "prompt_mask": mask}, {"uid": list(range(len(lengths)))}
    )
    batch.meta["temperature"] = SAMPLING.temperature
    return batch


def test_generate_pads_for_ranks_without_extra_samples(group):
    prompts = prompt_batch([4, 7, 5])  # 3 prompts on 2 ranks: one padding prompt
    out = group.generate_sequences(prompts, SAMPLING)
    assert len(out) == 3 * N
    assert out["uid"].tolist() == [0] * N + [1] * N + [2] * N
    assert torch.equal(out["prompt_ids"], prompts["prompt_ids"].repeat_interleave(N, 0))
    assert "dp_pad_rows" not in out.meta
    one = group.generate_sequences(prompt_batch([6]), SAMPLING)  # rank 1 gets only padding
    assert len(one) == N and one["uid"].tolist() == [0] * N


def test_update_and_sync_across_ranks(group, tiny_model):
    from transformers import AutoModelForCausalLM

    rollout = group.generate_sequences(prompt_batch([4, 7, 5, 6]), SAMPLING)
    batch = rollout.union(group.compute_log_prob(rollout))
    mask = batch["response_mask"]
    m = rollout_mismatch(batch["old_logp"], batch["rollout_logp"], mask)
    assert m["mismatch/abs_diff_max"] < 2e-4, m

    sign = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(len(batch))])
    batch["advantages"] = sign[:, None] * mask.float()
    per_rank = group.update_actor(batch)
    assert len(per_rank) == 2
    # gradients are all-reduced: both ranks report the same global norm
    assert per_rank[0]["actor/grad_norm"] == pytest.approx(per_rank[1]["actor/grad_norm"])
    new_logp = group.compute_log_prob(batch)["old_logp"]
    assert float(((new_logp - batch["old_logp"]) * mask).abs().max()) > 1e-2

    syncs = group.sync_weights()
    assert all(s["weight_sync/probe_max_abs_diff"] <= 1e-3 for s in syncs)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    distinct = sum(p.numel() * 4 for p in model.parameters())  # the tied LM head once
    assert all(s["weight_sync/bytes"] == distinct for s in syncs)
    # the rollout engines of both ranks now sample from the updated policy
    again = group.generate_sequences(prompt_batch([4, 7, 5, 6]), SAMPLING)
    lp = group.compute_log_prob(again)["old_logp"]
    m = rollout_mismatch(lp, again["rollout_logp"], again["response_mask"])
    assert m["mismatch/abs_diff_max"] < 2e-4, m


def test_bf16_rollout_engine_gets_the_bf16_probe_tolerance(ray_cluster, tiny_model):
    spec = HybridSpec(
        model_path=tiny_model,
        rollout=RolloutEngineConfig(
            engine="hf", dtype="bfloat16", probe_sequences=4, probe_length=32
        ),
        max_model_len=64,
    )
    pool = ResourcePool([1])
    workers = WorkerGroup(pool, HybridWorker, spec, timeout_s=300)
    try:
        # fp32 train engine (CPU) vs bf16 rollout engine: beyond the fp32 tolerance (1e-3),
        # within the bf16 one (0.1), so the probe must use the latter
        (init,) = workers.init_model()
        assert 1e-3 < init["weight_sync/probe_max_abs_diff"] <= 0.1
    finally:
        workers.kill()
        pool.remove()
