"""GPU-only checks of the FSDP2 engine: a bf16 mixed-precision step over nccl, and packed
sequences through flash-attn varlen. Skipped without CUDA (see tests/conftest.py)."""

from __future__ import annotations

import os

import pytest
import torch

from logics_rl.config.schema import TrainEngineConfig
from logics_rl.protocol import Batch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def nccl_world():
    import torch.distributed as dist

    from logics_rl.controller.worker import free_port

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    dist.init_process_group("nccl", rank=0, world_size=1)
    torch.cuda.set_device(0)
    yield
    dist.destroy_process_group()


def batch(n=6, P=8, R=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    p_len = torch.randint(1, P + 1, (n,), generator=g)
    r_len = torch.randint(1, R + 1, (n,), generator=g)
    pm = torch.arange(P)[None] >= (P - p_len)[:, None]
    rm = torch.arange(R)[None] < r_len[:, None]
    return Batch.from_dict(
        {
            "prompt_ids": torch.randint(5, 100, (n, P), generator=g) * pm,
            "prompt_mask": pm,
            "response_ids": torch.randint(5, 100, (n, R), generator=g) * rm,
            "response_mask": rm,
            "loss_mask": rm,
        }
    )


def reference_logp(model_path, b, attn="sdpa"):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, attn_implementation=attn
    ).cuda()
    out = torch.zeros(b["response_ids"].shape)
    with torch.no_grad():
        for i in range(len(b)):
            p = b["prompt_ids"][i][b["prompt_mask"][i]]
            r = b["response_ids"][i][b["response_mask"][i]]
            lp = torch.log_softmax(m(torch.cat([p, r])[None].cuda()).logits[0].float(), -1)
            out[i, : len(r)] = (
                lp[len(p) - 1 : len(p) - 1 + len(r)].gather(-1, r[:, None].cuda())[:, 0].cpu()
            )
    return out


def test_fsdp_bf16_step(nccl_world, tiny_model):
    from logics_rl.engines.train import build_train_engine

    eng = build_train_engine(TrainEngineConfig(attn_implementation="sdpa"), tiny_model)
    assert eng.dtype == torch.bfloat16
    b = batch()
    lp = eng.compute_log_prob(b, temperature=1.0).logp
    ref = reference_logp(tiny_model, b)
    mask = b["response_mask"]
    assert float((lp - ref)[mask].abs().max()) < 0.1  # bf16 compute vs fp32 reference
    assert_a_step_raises_the_likelihood(eng, b)


def assert_a_step_raises_the_likelihood(eng, b):
    """One train_step maximising the log-likelihood of the responses: a finite, non-zero
    gradient norm, and the mean log-prob goes up."""
    mask = b["response_mask"]
    tokens = int(mask.sum())

    def loss_fn(mb, logp, ent):
        return -(logp * mb["response_mask"]).sum() / tokens, {}

    before = eng.compute_log_prob(b, temperature=1.0).logp
    out = eng.train_step(b, loss_fn, temperature=1.0)
    assert torch.isfinite(torch.tensor(out["grad_norm"])) and out["grad_norm"] > 0
    after = eng.compute_log_prob(b, temperature=1.0).logp
    assert float((after - before)[mask].mean()) > 0


def test_flash_attn_varlen_packing_matches_per_sample(nccl_world, tiny_model):
    pytest.importorskip("flash_attn", reason="flash-attn is not installed")
    from logics_rl.engines.train import build_train_engine

    eng = build_train_engine(
        TrainEngineConfig(attn_implementation="flash_attention_2"), tiny_model, trainable=False
    )
    b = batch(seed=1)
    lp = eng.compute_log_prob(b, temperature=1.0).logp
    ref = reference_logp(tiny_model, b)
    assert float((lp - ref)[b["response_mask"]].abs().max()) < 0.1


def test_megatron_on_cuda_fp32_matches_hf_and_bf16_trains(nccl_world, tiny_model):
    """The Megatron engine where CUDA exists: none of the CPU shims apply (``cpu.py`` is a
    no-op), fp32 log-probs equal HF's, and a bf16-autocast step raises the likelihood."""
    pytest.importorskip("megatron.core")
    from logics_rl.engines.train import build_train_engine
    from logics_rl.engines.train.megatron import cpu

    fp32 = build_train_engine(
        TrainEngineConfig(engine="megatron", dtype="float32"), tiny_model, trainable=False
    )
    assert not cpu._PATCHED
    b = batch(seed=2)
    mask = b["response_mask"]
    ref = reference_logp(tiny_model, b, attn="eager")
    lp = fp32.compute_log_prob(b, temperature=1.0).logp
    assert float((lp - ref)[mask].abs().max()) < 1e-3  # TF32 matmuls may be on
    del fp32
    eng = build_train_engine(TrainEngineConfig(engine="megatron"), tiny_model)
    assert eng.dtype == torch.bfloat16
    assert_a_step_raises_the_likelihood(eng, b)
