"""FSDP2 engine on 2 gloo ranks vs a single-process HF reference: log-probs, loss, gradients
(prompts distinct or shared by groups of samples); and the gradient's independence from how the
batch is cut into micro-batches."""

from __future__ import annotations

import sys

import engine_runs
import pytest
import torch
from engine_runs import hf_reference, make_batch, weighted_nll

from logics_rl.config.schema import TrainEngineConfig
from logics_rl.controller import Dispatch, ResourcePool, Worker, WorkerGroup, register
from logics_rl.protocol import Batch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def _by_value(ray_cluster):
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray_cluster.cloudpickle.register_pickle_by_value(engine_runs)


class EngineWorker(Worker):
    def __init__(self, model_path: str):
        super().__init__()
        self.model_path = model_path

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def build(self, max_tokens: int):
        from logics_rl.engines.train import build_train_engine

        self.init_distributed()
        cfg = TrainEngineConfig(max_tokens_per_micro_batch=max_tokens, share_prompts=True)
        self.engine = build_train_engine(cfg, self.model_path)
        counts = self.engine.all_reduce_dp(torch.tensor([1.0, self.rank]))
        e = self.engine
        return e.parallel.dp_size, counts.tolist(), str(e.dtype), e.layout

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def set_budget(self, max_tokens: int):
        self.engine.cfg.max_tokens_per_micro_batch = max_tokens

    @register(dispatch=Dispatch.DP_COMPUTE)
    def logp(self, batch: Batch) -> Batch:
        out = self.engine.compute_log_prob(batch, temperature=1.0, with_entropy=True)
        return Batch.from_dict({"logp": out.logp, "entropy": out.entropy})

    @register(dispatch=Dispatch.DP_COMPUTE)
    def layout(self, batch: Batch):
        return self.engine._micro_batches(batch)[0]

    @register(dispatch=Dispatch.DP_COMPUTE)
    def grads(self, batch: Batch, total_tokens: int):
        metrics = self.engine.forward_backward(batch, weighted_nll(total_tokens), temperature=1.0)
        grads = {}
        for name, p in self.engine.lm.named_parameters():
            g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
            grads[name] = g.clone()
        self.engine.optimizer.zero_grad(set_to_none=True)
        return metrics["micro_batches"], grads


@pytest.fixture(scope="module")
def engines(ray_cluster, tiny_model):
    pool = ResourcePool([2])
    group = WorkerGroup(pool, EngineWorker, tiny_model, timeout_s=300)
    # all_reduce_dp sums; on CPU the samples of a prompt share its forward
    assert group.build(10_000) == [(2, [2.0, 1.0], "torch.float32", "shared")] * 2
    yield group
    group.kill()
    pool.remove()


@pytest.mark.parametrize("group", [1, 4], ids=["distinct-prompts", "groups-of-4"])
def test_logprobs_and_gradients_match_single_process_reference(engines, tiny_model, group):
    # CPU: the shared layout (a prompt pass, then the responses on its cache) under FSDP2
    # ranks get rows 0-5 / 6-11 (one group split); prompts long next to responses: running each
    # once costs far fewer padded tokens, so both ranks share (distinct prompts: nothing to share)
    batch = make_batch(n=12, group=group, max_prompt=200 if group > 1 else 6)
    assert engines.layout(batch) == ["shared" if group > 1 else "padded"] * 2
    ref_logp, _, ref_grads = hf_reference(tiny_model, batch)
    out = engines.logp(batch)
    torch.testing.assert_close(out["logp"], ref_logp, atol=1e-5, rtol=0)
    assert torch.all(out["entropy"][~batch["response_mask"]] == 0)
    total = int(batch["response_mask"].sum())
    results = engines.grads(batch, total)
    for micro, grads in results:
        assert micro == 1
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_gradient_independent_of_micro_batches(engines):
    batch = make_batch(seed=3)
    total = int(batch["response_mask"].sum())
    engines.set_budget(10_000)
    (one, g1), _ = engines.grads(batch, total)
    engines.set_budget(16)  # forces several micro-batches per rank
    (many, g4), _ = engines.grads(batch, total)
    engines.set_budget(10_000)
    assert one == 1 and many >= 4
    for name in g1:
        torch.testing.assert_close(g4[name], g1[name], atol=1e-5, rtol=1e-4, msg=name)
