"""The hybrid worker on one rank, as the trainer drives it: FSDP2 actor + frozen reference + vLLM
CPU rollout in one Ray actor. Generation, train/rollout log-prob parity, a policy update, and the
weight sync with its parity probe (which must catch a stale or corrupted rollout engine).

References: a plain HF forward of the same weights (log-probs, entropy), hand-computed values
(the first AdamW step moves weights by exactly lr; the on-policy PPO loss is -sum(A)/N).
"""

from __future__ import annotations

import json
import math
import re
import sys
import time

import pytest
import torch

from logics_rl.algorithms.mismatch import rollout_mismatch
from logics_rl.batches import StageDataError
from logics_rl.config.schema import (
    OptimConfig,
    RolloutConfig,
    TrainEngineConfig,
    VLLMConfig,
    WeightSyncConfig,
)
from logics_rl.controller import Dispatch, ResourcePool, WorkerGroup, register
from logics_rl.data.prompts import load_prompts, to_batch
from logics_rl.engines.rollout import Sampling
from logics_rl.protocol import Batch
from logics_rl.workers.hybrid import HybridSpec, HybridWorker
from logics_rl.workers.weight_sync import WeightSyncError, probe_sequences

pytestmark = pytest.mark.integration

LR = 1e-4
TEMPERATURE = 0.8
MAX_TOKENS = 16
CORRUPTED = "model.layers.1.mlp.down_proj.weight"


@pytest.fixture(scope="module", autouse=True)
def _by_value(ray_cluster):
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class InspectableHybridWorker(HybridWorker):
    """The real hybrid worker plus read-outs and the two faults the weight sync must catch."""

    @register(dispatch=Dispatch.ONE_TO_ALL)  # the export is collective
    def export_state(self) -> dict[str, torch.Tensor]:
        return {n: t.clone() for n, t in self.actor.engine.named_parameters_for_export()}

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def probe(self) -> list[list[int]]:
        return self.weight_sync.probe

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def parity_probe(self) -> float:
        return self.weight_sync.check(self.rank)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def rollout_prompt_logprobs(self, seqs: list[list[int]]) -> list[list[float]]:
        return self.rollout.prompt_logprobs(seqs)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def add_noise(self, scale: float, seed: int) -> None:
        """Perturb the train engine's weights only (the rollout engine is now stale)."""
        module = self.actor.engine.module
        # After a no-grad forward FSDP2 keeps the root unit unsharded; edits to the sharded
        # parameters become visible only once it is resharded.
        if hasattr(module, "reshard"):  # FSDP-wrapped (several ranks)
            module.reshard()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in module.parameters():
                local = p.to_local() if hasattr(p, "to_local") else p
                local.add_(scale * torch.randn(local.shape, generator=g))

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def sync_weights_corrupting(self, name: str, delta: torch.Tensor) -> dict[str, float]:
        """``sync_weights`` with ``delta`` added to one tensor of the stream given to vLLM."""
        engine = self.actor.engine
        export = engine.named_parameters_for_export

        def corrupted():
            for n, t in export():
                yield n, (t + delta if n == name else t)

        engine.named_parameters_for_export = corrupted
        try:
            return self.weight_sync.sync()
        finally:
            del engine.named_parameters_for_export


@pytest.fixture(scope="module")
def spec(tiny_model) -> HybridSpec:
    return HybridSpec(
        model_path=tiny_model,
        actor=TrainEngineConfig(optim=OptimConfig(lr=LR)),
        rollout=RolloutConfig(
            vllm=VLLMConfig(kv_cache_gb=0.1),
            # a probe longer than the context: it must be cut to what vLLM accepts (127 tokens)
            weight_sync=WeightSyncConfig(probe_sequences=4, probe_length=200),
        ),
        need_ref=True,
        max_model_len=128,
        total_steps=10,
        seed=0,
    )


@pytest.fixture(scope="module")
def hybrid(ray_cluster, spec):
    pool = ResourcePool([1])
    group = WorkerGroup(pool, InspectableHybridWorker, spec, timeout_s=300)
    init = group.init_model()
    yield group, init
    group.kill()
    pool.remove()


@pytest.fixture(scope="module")
def hf(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory, hf) -> Batch:
    """Three prompts through the trainer's own path: jsonl -> load_prompts -> to_batch."""
    _, tok = hf
    path = tmp_path_factory.mktemp("prompts") / "train.jsonl"
    rows = [
        {"prompt": "What is 2+3?", "ground_truth": "5"},
        {"prompt": "What is 12+30?", "ground_truth": "42", "data_source": "arith"},
        {"prompt": "Say hi.", "ground_truth": "hi"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records, _ = load_prompts([str(path)], tok, max_prompt_length=64)
    width = max(len(r.prompt_ids) for r in records)
    return to_batch(records, tok.pad_token_id, width).batch


SAMPLING = Sampling(n=4, temperature=TEMPERATURE, max_tokens=MAX_TOKENS)


@torch.no_grad()
def hf_logp_entropy(model, batch: Batch, temperature: float):
    """Per-sample plain HF forward: log-probs and entropy of the response tokens, [B, R]."""
    shape = batch["response_ids"].shape
    logp, ent = torch.zeros(shape), torch.zeros(shape)
    for i in range(len(batch)):
        p = batch["prompt_ids"][i][batch["prompt_mask"][i]]
        r = batch["response_ids"][i][batch["response_mask"][i]]
        logits = model(torch.cat([p, r])[None]).logits[0].float() / temperature
        lp = torch.log_softmax(logits[len(p) - 1 : len(p) - 1 + len(r)], -1)
        logp[i, : len(r)] = lp.gather(-1, r[:, None])[:, 0]
        ent[i, : len(r)] = -(lp.exp() * lp).sum(-1)
    return logp, ent


def load_into(model, state: dict[str, torch.Tensor]):
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(state[n])
    return model


def unique_bytes(state: dict[str, torch.Tensor]) -> int:
    """fp32 bytes of the distinct weights: the tiny model ties its LM head to the embedding."""
    assert torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"])
    return sum(t.numel() * 4 for n, t in state.items() if n != "lm_head.weight")


def test_init_model_passes_the_parity_probe(hybrid):
    _, init = hybrid
    (out,) = init
    assert 0.0 <= out["weight_sync/probe_abs_diff_max"] <= 1e-3


def test_generate_sequences_layout(hybrid, prompts, hf):
    group, _ = hybrid
    _, tok = hf
    out = group.generate_sequences(prompts, SAMPLING)
    n = SAMPLING.n
    assert len(out) == len(prompts) * n
    assert out["uid"].tolist() == [u for u in range(len(prompts)) for _ in range(n)]
    assert list(out["ground_truth"]) == [g for g in prompts["ground_truth"] for _ in range(n)]
    assert torch.equal(out["prompt_ids"], prompts["prompt_ids"].repeat_interleave(n, 0))
    assert out.meta["temperature"] == TEMPERATURE
    mask, ids, logp = out["response_mask"], out["response_ids"], out["rollout_logp"]
    assert mask.shape == ids.shape == logp.shape == (len(out), MAX_TOKENS)
    lengths = mask.sum(1)
    assert torch.equal(mask, torch.arange(MAX_TOKENS)[None] < lengths[:, None])  # prefix masks
    assert bool((lengths >= 1).all())
    assert bool((logp[mask] < 0).all()) and bool((logp[~mask] == 0).all())
    assert bool((ids[~mask] == tok.pad_token_id).all())
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    for i in range(len(out)):
        resp = ids[i, : lengths[i]].tolist()
        assert out["finish_reason"][i] == ("stop" if resp[-1] == eos else "length")
        assert bool(out["truncated"][i]) == (out["finish_reason"][i] == "length")
        if out["truncated"][i]:
            assert lengths[i] == MAX_TOKENS
        assert out["response"][i] == tok.decode(resp, skip_special_tokens=True)


def test_log_probs_agree_with_rollout_and_hf(hybrid, prompts, hf):
    group, _ = hybrid
    model, _ = hf
    rollout = group.generate_sequences(prompts, SAMPLING)
    old = group.compute_log_prob(rollout)
    mask = rollout["response_mask"]
    # train engine vs rollout engine on the sampled tokens, both at the sampling temperature
    m = rollout_mismatch(old["logp"], rollout["rollout_logp"], mask)
    assert m["mismatch/abs_diff_max"] < 2e-4, m
    assert abs(m["mismatch/k3_kl"]) < 1e-6
    # ... and vs a plain HF forward of the weights the worker holds now
    current = load_into(model, group.export_state()[0])
    ref_logp, ref_ent = hf_logp_entropy(current, rollout, TEMPERATURE)
    torch.testing.assert_close(old["logp"], ref_logp, atol=1e-4, rtol=0)
    torch.testing.assert_close(old["entropy"], ref_ent, atol=1e-4, rtol=0)


def test_update_actor_then_sync(hybrid, prompts, tiny_model, train_batch):
    group, _ = hybrid
    rollout = group.generate_sequences(prompts, SAMPLING)
    old_logp = group.compute_log_prob(rollout)["logp"]
    mask = rollout["response_mask"].float()
    sign = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(len(rollout))])
    batch = train_batch(rollout, sign[:, None] * mask, old_logp)
    tokens = mask.sum()

    def objective(logp):  # the token-mean policy-gradient surrogate
        return float((batch["advantages"] * logp * mask).sum() / tokens)

    before = group.export_state()[0]
    t0 = time.perf_counter()
    (metrics,) = group.update_actor(batch)
    driver_s = time.perf_counter() - t0
    after = group.export_state()[0]

    assert metrics["actor/optimizer_steps"] == 1.0
    # the worker's own time in the update: part of what the driver waited for
    assert 0 < metrics["actor/update/seconds"] <= driver_s
    assert metrics["actor/lr"] == pytest.approx(LR)
    assert math.isfinite(metrics["actor/grad_norm"]) and metrics["actor/grad_norm"] > 0
    # on-policy (old_logp from the same weights): ratio 1, PPO loss = -sum(A) / N
    expected_loss = -float((batch["advantages"] * mask).sum() / tokens)
    assert metrics["actor/pg_loss"] == pytest.approx(expected_loss, abs=1e-5)
    # The first AdamW step (this is the worker's first update) moves every weight by
    # lr * g / (|g| + eps) plus decay: at most lr * (1 + wd * |w|), and exactly lr wherever the
    # gradient dwarfs eps (+ fp32 rounding: two ulps of the largest weight, 1.0 for the norms).
    step = max(float((after[k] - before[k]).abs().max()) for k in before)
    w_max = max(float(t.abs().max()) for t in before.values())
    assert LR * 0.999 < step <= LR * (1 + 0.01 * w_max) + 2 * w_max * 2**-23
    new_logp = group.compute_log_prob(batch)["logp"]
    assert objective(new_logp) > objective(old_logp)  # gradient ascent on the surrogate
    moved = float(((new_logp - old_logp) * mask).abs().max())
    assert moved > 1e-2  # large against the parity tolerances below, so they can fail
    # the frozen reference is still the model on disk, 0.01+ away from the actor now
    from transformers import AutoModelForCausalLM

    initial = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    torch.testing.assert_close(
        group.compute_ref_log_prob(batch)["ref_logp"],
        hf_logp_entropy(initial, batch, TEMPERATURE)[0],
        atol=1e-4,
        rtol=0,
    )

    (sync,) = group.sync_weights()
    assert sync["weight_sync/probe_abs_diff_max"] <= 1e-3
    assert sync["weight_sync/bytes"] == unique_bytes(after)  # the tied LM head counted once
    assert sync["weight_sync/buckets"] >= 1
    # the rollout engine now samples from the updated policy
    again = group.generate_sequences(prompts, SAMPLING)
    m = rollout_mismatch(
        group.compute_log_prob(again)["logp"], again["rollout_logp"], again["response_mask"]
    )
    assert m["mismatch/abs_diff_max"] < 2e-4, m


def test_checkpoint_restores_weights_and_the_sampling_stream(
    hybrid, prompts, tmp_path, train_batch
):
    group, _ = hybrid
    path = str(tmp_path / "ckpt")
    group.save_checkpoint(path)
    saved = group.export_state()[0]
    first = group.generate_sequences(prompts, SAMPLING)
    old_logp = group.compute_log_prob(first)["logp"]
    group.update_actor(train_batch(first, -first["response_mask"].float(), old_logp))  # move away

    group.sync_weights()
    group.load_checkpoint(path)  # ... and back: weights, rollout engine and generator state
    restored = group.export_state()[0]
    assert all(torch.equal(restored[k], saved[k]) for k in saved)
    again = group.generate_sequences(prompts, SAMPLING)
    assert torch.equal(again["response_ids"], first["response_ids"])
    torch.testing.assert_close(again["rollout_logp"], first["rollout_logp"], atol=1e-5, rtol=0)


def parse_sync_error(err: WeightSyncError) -> tuple[float, float]:
    assert err.rank == 0 and "rollout.weight_sync.probe_tol" in str(err)
    found = re.search(r"= (\S+) exceeds the tolerance (\S+) ", str(err))
    assert found, str(err)
    return float(found.group(1)), float(found.group(2))


def test_weight_sync_probe_catches_stale_and_corrupted_weights(hybrid, hf, spec):
    group, _ = hybrid
    model, tok = hf
    group.add_noise(0.02, seed=1)
    with pytest.raises(WeightSyncError) as stale:  # the rollout engine still has old weights
        group.parity_probe()
    diff, tol = parse_sync_error(stale.value)
    assert tol == 1e-3 and diff > tol

    (sync,) = group.sync_weights()
    assert sync["weight_sync/probe_abs_diff_max"] <= 1e-3
    state = group.export_state()[0]
    current = load_into(model, state)
    (probe,) = group.probe()
    assert probe == probe_sequences(
        min(len(tok), current.config.vocab_size),
        spec.rollout.weight_sync.probe_sequences,
        length=127,
    )
    seqs = probe + [list(range(5, 90))]
    for seq, lp in zip(seqs, group.rollout_prompt_logprobs(seqs)[0]):
        ref = hf_logp_entropy(
            current,
            Batch.from_dict(
                {
                    "prompt_ids": torch.tensor([seq[:1]]),
                    "prompt_mask": torch.ones(1, 1, dtype=torch.bool),
                    "response_ids": torch.tensor([seq[1:]]),
                    "response_mask": torch.ones(1, len(seq) - 1, dtype=torch.bool),
                }
            ),
            1.0,
        )[0][0]
        torch.testing.assert_close(torch.tensor(lp), ref, atol=1e-4, rtol=0)

    # One corrupted tensor in the stream: the probe must fail and report the true difference.
    delta = 0.05 * torch.randn(state[CORRUPTED].shape, generator=torch.Generator().manual_seed(2))
    with pytest.raises(WeightSyncError) as bad:
        group.sync_weights_corrupting(CORRUPTED, delta)
    diff, tol = parse_sync_error(bad.value)
    assert tol == 1e-3
    probe_batch = Batch.from_dict(
        {
            "prompt_ids": torch.tensor([s[:1] for s in probe]),
            "prompt_mask": torch.ones(len(probe), 1, dtype=torch.bool),
            "response_ids": torch.tensor([s[1:] for s in probe]),
            "response_mask": torch.ones(len(probe), len(probe[0]) - 1, dtype=torch.bool),
        }
    )
    good = hf_logp_entropy(current, probe_batch, 1.0)[0]
    broken = dict(state)
    broken[CORRUPTED] = state[CORRUPTED] + delta
    corrupt = hf_logp_entropy(load_into(model, broken), probe_batch, 1.0)[0]
    expected = float((good - corrupt).abs().max())
    assert expected > 10 * tol
    assert diff == pytest.approx(expected, rel=1e-3, abs=1e-4)

    # a clean sync repairs the rollout engine
    (sync,) = group.sync_weights()
    assert sync["weight_sync/probe_abs_diff_max"] <= 1e-3


def test_samples_are_stamped_and_stale_ones_need_behaviour_log_probs(hybrid, prompts, train_batch):
    group, _ = hybrid
    (sync,) = group.sync_weights()  # rollout engine and actor at the same version
    fresh = group.generate_sequences(prompts, SAMPLING)
    versions = set(fresh["policy_version"].tolist())
    assert len(versions) == 1
    adv = fresh["response_mask"].float() * 0.1
    (m,) = group.update_actor(train_batch(fresh, adv, None))  # on-policy: accepted
    assert math.isfinite(m["actor/pg_loss"])
    # the actor moved on; the rollout engine was not synced: its samples are one version behind
    stale = group.generate_sequences(prompts, SAMPLING)
    assert set(stale["policy_version"].tolist()) == versions
    with pytest.raises(StageDataError, match="without behaviour log-probs"):
        group.update_actor(train_batch(stale, adv, None))
    # with behaviour log-probs the same samples are fine (importance ratio against them)
    (m,) = group.update_actor(train_batch(stale, adv, stale["rollout_logp"]))
    assert math.isfinite(m["actor/pg_loss"])
    (sync,) = group.sync_weights()
    fresh = group.generate_sequences(prompts, SAMPLING)
    assert set(fresh["policy_version"].tolist()) == {max(versions) + 2}
