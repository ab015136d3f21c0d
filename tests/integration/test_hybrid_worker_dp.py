"""The hybrid worker with the HF rollout engine (cheap to build): on two data-parallel ranks
(FSDP2 over gloo), prompts that do not divide by the ranks (DP padding must not leak extra
samples), train/rollout parity across ranks, and an update followed by a verified weight sync;
on one rank, a bf16 rollout engine next to the fp32 train engine (the probe's tolerance)."""

from __future__ import annotations

import sys

import pytest
import torch

from logics_rl.algorithms.mismatch import rollout_mismatch
from logics_rl.config.schema import OptimConfig, RolloutConfig, TrainEngineConfig, WeightSyncConfig
from logics_rl.controller import ResourcePool, WorkerGroup
from logics_rl.engines.rollout import Sampling
from logics_rl.protocol import Batch
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
        actor=TrainEngineConfig(optim=OptimConfig(lr=1e-3)),
        rollout=RolloutConfig(
            engine="hf", weight_sync=WeightSyncConfig(probe_sequences=2, probe_length=16)
        ),
        max_model_len=64,
        seed=0,
    )
    pool = ResourcePool([2])
    workers = WorkerGroup(pool, HybridWorker, spec, timeout_s=300)
    init = workers.init_model()
    assert len(init) == 2
    assert all(0 <= m["weight_sync/probe_abs_diff_max"] <= 1e-3 for m in init)
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
    n = len(lengths)
    return Batch.from_dict(
        {"prompt_ids": ids, "prompt_mask": mask},
        {
            "uid": list(range(n)),
            "prompt": [f"p{i}" for i in range(n)],
            "ground_truth": ["1"] * n,
            "data_source": ["x"] * n,
            "extras": [{}] * n,
        },
    )


def test_generate_pads_for_ranks_without_extra_samples(group):
    prompts = prompt_batch([4, 7, 5])  # 3 prompts on 2 ranks: one padding prompt
    out = group.generate_sequences(prompts, SAMPLING)
    assert len(out) == 3 * N
    assert out["uid"].tolist() == [0] * N + [1] * N + [2] * N
    assert torch.equal(out["prompt_ids"], prompts["prompt_ids"].repeat_interleave(N, 0))
    one = group.generate_sequences(prompt_batch([6]), SAMPLING)  # rank 1 gets only padding
    assert len(one) == N and one["uid"].tolist() == [0] * N


def test_update_and_sync_across_ranks(group, tiny_model, train_batch):
    from transformers import AutoModelForCausalLM

    rollout = group.generate_sequences(prompt_batch([4, 7, 5, 6]), SAMPLING)
    old_logp = group.compute_log_prob(rollout)["logp"]
    mask = rollout["response_mask"]
    m = rollout_mismatch(old_logp, rollout["rollout_logp"], mask)
    assert m["mismatch/abs_diff_max"] < 2e-4, m

    sign = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(len(rollout))])
    batch = train_batch(rollout, sign[:, None] * mask.float(), old_logp)
    per_rank = group.update_actor(batch)
    assert len(per_rank) == 2
    # gradients are all-reduced: both ranks report the same global norm
    assert per_rank[0]["actor/grad_norm"] == pytest.approx(per_rank[1]["actor/grad_norm"])
    new_logp = group.compute_log_prob(batch)["logp"]
    assert float(((new_logp - old_logp) * mask).abs().max()) > 1e-2
    with pytest.raises(ValueError, match="update_actor: 5 rows do not divide over 2"):
        group.update_actor(batch[:5])

    syncs = group.sync_weights()
    assert all(s["weight_sync/probe_abs_diff_max"] <= 1e-3 for s in syncs)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    distinct = sum(p.numel() * 4 for p in model.parameters())  # the tied LM head once
    assert all(s["weight_sync/bytes"] == distinct for s in syncs)
    # the rollout engines of both ranks now sample from the updated policy
    again = group.generate_sequences(prompt_batch([4, 7, 5, 6]), SAMPLING)
    lp = group.compute_log_prob(again)["logp"]
    m = rollout_mismatch(lp, again["rollout_logp"], again["response_mask"])
    assert m["mismatch/abs_diff_max"] < 2e-4, m


def test_bf16_rollout_engine_gets_the_bf16_probe_tolerance(ray_cluster, tiny_model):
    spec = HybridSpec(
        model_path=tiny_model,
        rollout=RolloutConfig(
            engine="hf",
            dtype="bfloat16",
            weight_sync=WeightSyncConfig(probe_sequences=4, probe_length=32),
        ),
        max_model_len=64,
    )
    pool = ResourcePool([1])
    workers = WorkerGroup(pool, HybridWorker, spec, timeout_s=300)
    try:
        # fp32 train engine (CPU) vs bf16 rollout engine: beyond the fp32 tolerance (1e-3),
        # within the bf16 one (1.0), so the probe must use the latter
        (init,) = workers.init_model()
        assert 1e-3 < init["weight_sync/probe_abs_diff_max"] <= 0.1
    finally:
        workers.kill()
        pool.remove()


def test_rollout_role_runs_alone_in_its_own_pool(ray_cluster, tiny_model):
    """Generation without a train engine: two rollout workers in a pool of their own, weights
    arriving through the object store, every sample stamped with the version it was drawn by."""
    from transformers import AutoModelForCausalLM

    from logics_rl.workers.rollout import RolloutWorker

    pool = ResourcePool([2])
    workers = WorkerGroup(pool, RolloutWorker, tiny_model, RolloutConfig(engine="hf"), 64, 0)
    try:
        workers.init_model()
        prompts = prompt_batch([4, 7, 5])  # 3 prompts on 2 ranks
        out = workers.generate_sequences(prompts, SAMPLING)
        assert len(out) == 3 * N and set(out["policy_version"].tolist()) == {0}
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        state = list(model.state_dict().items())
        stats = workers.load_weights(state, 7)
        assert all(s["bytes"] > 0 for s in stats)
        out = workers.generate_sequences(prompts, SAMPLING)
        assert set(out["policy_version"].tolist()) == {7}
        # the samples' log-probs are the new weights' (a plain HF forward at the temperature)
        with torch.no_grad():
            for i in range(len(out)):
                p = out["prompt_ids"][i][out["prompt_mask"][i]]
                r = out["response_ids"][i][out["response_mask"][i]]
                logits = model(torch.cat([p, r])[None]).logits[0] / SAMPLING.temperature
                lp = torch.log_softmax(logits[len(p) - 1 : len(p) - 1 + len(r)], -1)
                expected = lp.gather(-1, r[:, None])[:, 0]
                torch.testing.assert_close(
                    out["rollout_logp"][i, : len(r)], expected, atol=1e-4, rtol=0
                )
    finally:
        workers.kill()
        pool.remove()
