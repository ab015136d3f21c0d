"""The megatron-core engine on CPU over gloo (real megatron-core, spawned worlds, no Ray).

- TP=1 against a plain HF model in fp32: log-probs and entropy (<= 1e-5), gradients of one loss
  with padding and uneven lengths; the parameter count equals HF's.
- TP=2, PP=2, DP=2 (with activation recomputation) and TP=2 with sequence parallelism (2 ranks)
  reproduce TP=1's log-probs, gradients, and a 3-step training run's grad-norm trajectory.
- bfloat16 autocast on CPU trains (log-probs within bf16 rounding of float32).
- An untied Llama at TP=2 and a Qwen2 (qkv bias) at PP=2 against their HF models.
- A checkpoint written at TP=2 reads back at TP=1 (resharded; Adam moments too): one more step
  from it equals one more step of the TP=2 run; it exports offline to the same HF weights.
"""

from __future__ import annotations

import os

import pytest
import torch
from engine_runs import hf_reference, load_results, make_batch, run_world

pytestmark = pytest.mark.integration

pytest.importorskip("megatron.core")


def small_hf(tmp: str, model_type: str, tied: bool) -> str:
    """A randomly initialised 2-layer HF model (no tokenizer: the engine does not need one)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(
        model_type,
        vocab_size=101,  # odd: vocabulary padding at TP=2
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=tied,
        max_position_embeddings=128,
    )
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():  # qwen2's qkv biases start at zero: make them count
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    path = os.path.join(tmp, f"{model_type}_{'tied' if tied else 'untied'}")
    model.save_pretrained(path)
    return path


def collecting(results: list[dict]) -> dict:
    """The result of the rank that returns its data-parallel group's outputs (dp rank 0)."""
    return next(r for r in results if r["parallel"].collects and r["parallel"].dp_rank == 0)


def merged(results: list[dict], key: str) -> dict:
    out: dict = {}
    for r in results:
        out.update(r[key])
    return out


def gathered_rows(results: list[dict], key: str) -> torch.Tensor:
    """[B, R] outputs of every data-parallel rank put back in batch order."""
    rows = [r for r in results if r["parallel"].collects]
    B = sum(len(r["rows"]) for r in rows)
    out = torch.zeros(B, rows[0][key].shape[1])
    for r in rows:
        out[r["rows"]] = r[key]
    return out


def hf_param_count(path: str) -> int:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).num_parameters()


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    """Every world once: (name -> list of per-rank results), plus the paths used."""
    tmp = str(tmp_path_factory.mktemp("megatron"))
    llama = small_hf(tmp, "llama", tied=False)
    qwen2 = small_hf(tmp, "qwen2", tied=False)
    ck = os.path.join(tmp, "ckpt_tp2")
    specs = {
        "tp2": (2, dict(model=tiny_model, tp=2, pp=1, save=ck, after_steps=1)),
        "tp1": (1, dict(model=tiny_model, tp=1, pp=1, load=ck, after_steps=1)),
        "pp2": (2, dict(model=tiny_model, tp=1, pp=2)),
        "dp2": (2, dict(model=tiny_model, tp=1, pp=1, recompute=True)),
        "tp2_sp": (2, dict(model=tiny_model, tp=2, pp=1, sp=True)),
        "tp1_bf16": (1, dict(model=tiny_model, tp=1, pp=1, dtype="bfloat16")),
        "llama_tp2": (2, dict(model=llama, tp=2, pp=1, steps=0)),
        "qwen2_pp2": (2, dict(model=qwen2, tp=1, pp=2, steps=0)),
    }
    out = {}
    for name, (world, spec) in specs.items():  # tp2 before tp1: tp1 reads tp2's checkpoint
        spec = {**spec, "out": os.path.join(tmp, name)}
        run_world(world, spec)
        out[name] = load_results(spec["out"])
    return {"results": out, "ckpt": ck, "tmp": tmp, "llama": llama, "qwen2": qwen2}


def test_tp1_matches_hf_and_counts_hf_parameters(runs, tiny_model):
    r = runs["results"]["tp1"][0]
    batch = make_batch(vocab=101)
    ref_logp, ref_ent, ref_grads = hf_reference(tiny_model, batch, temperature=0.7)
    torch.testing.assert_close(r["logp"], ref_logp, atol=1e-5, rtol=0)
    torch.testing.assert_close(r["entropy"], ref_ent, atol=1e-5, rtol=0)
    assert torch.all(r["logp"][~batch["response_mask"]] == 0)
    assert sorted(r["grads"]) == sorted(ref_grads)
    for name, g in ref_grads.items():
        torch.testing.assert_close(r["grads"][name], g, atol=1e-6, rtol=1e-4, msg=name)
    assert r["params"] == hf_param_count(tiny_model)
    assert r["metrics"]["micro_batches"] >= 2  # a 64-token budget cuts the batch


@pytest.mark.parametrize("layout", ["tp2", "pp2", "dp2", "tp2_sp"])
def test_parallel_layouts_reproduce_tp1(runs, layout):
    base = runs["results"]["tp1"][0]
    results = runs["results"][layout]
    torch.testing.assert_close(gathered_rows(results, "logp"), base["logp"], atol=2e-6, rtol=0)
    torch.testing.assert_close(
        gathered_rows(results, "entropy"), base["entropy"], atol=2e-6, rtol=0
    )
    grads = merged(results, "grads")
    assert sorted(grads) == sorted(base["grads"])
    for name, g in base["grads"].items():
        torch.testing.assert_close(grads[name], g, atol=1e-7, rtol=1e-5, msg=name)
    norms = [n for _, n in collecting(results)["losses"]]
    base_norms = [n for _, n in base["losses"]]
    assert len(norms) == 3 and norms[0] > 0
    torch.testing.assert_close(torch.tensor(norms), torch.tensor(base_norms), rtol=1e-5, atol=0)
    assert {r["params"] for r in results} == {base["params"]}


def test_bfloat16_autocast_trains_on_cpu(runs):
    """bf16 matmuls over float32 weights (CPU autocast around forward and backward: megatron's
    linear layers replay autocast in their backward only on CUDA); log-probs stay float32."""
    base, bf16 = runs["results"]["tp1"][0], runs["results"]["tp1_bf16"][0]
    assert bf16["logp"].dtype == torch.float32
    diff = (bf16["logp"] - base["logp"]).abs().max()
    assert 0 < diff < 0.1  # bf16 rounding, not another model
    norms = torch.tensor([n for _, n in bf16["losses"]])
    base_norms = torch.tensor([n for _, n in base["losses"]])
    torch.testing.assert_close(norms, base_norms, rtol=0.05, atol=0)


@pytest.mark.parametrize("name,kind", [("llama_tp2", "llama"), ("qwen2_pp2", "qwen2")])
def test_llama_and_qwen2_match_hf(runs, name, kind):
    path = runs[kind]
    results = runs["results"][name]
    batch = make_batch(vocab=101)
    ref_logp, ref_ent, ref_grads = hf_reference(path, batch, temperature=0.7)
    torch.testing.assert_close(gathered_rows(results, "logp"), ref_logp, atol=1e-5, rtol=0)
    torch.testing.assert_close(gathered_rows(results, "entropy"), ref_ent, atol=1e-5, rtol=0)
    grads = merged(results, "grads")
    assert sorted(grads) == sorted(ref_grads)
    for n, g in ref_grads.items():
        torch.testing.assert_close(grads[n], g, atol=1e-6, rtol=1e-4, msg=n)
    assert {r["params"] for r in results} == {hf_param_count(path)}


def test_checkpoint_reshards_from_tp2_to_tp1(runs):
    tp2 = runs["results"]["tp2"][0]["weights"]
    tp1 = runs["results"]["tp1"][0]["weights"]
    assert sorted(tp1) == sorted(tp2)
    for n in tp2:  # both: 3 steps at tp2, checkpoint, one more step (at tp2 / at tp1)
        torch.testing.assert_close(tp1[n], tp2[n], atol=1e-7, rtol=1e-6, msg=n)
    # the checkpoint alone, without Megatron: the weights as they were when it was written
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    saved = runs["results"]["tp2"][0]["saved_weights"]
    from logics_rl.engines.train.megatron.engine import MegatronEngine

    out = os.path.join(runs["tmp"], "export")
    MegatronEngine.export_offline(runs["ckpt"], out)
    exported = load_file(os.path.join(out, "model.safetensors"))
    assert sorted(exported) == sorted(n for n in saved if n != "lm_head.weight")  # tied
    for n, t in exported.items():
        assert torch.equal(t, saved[n]), n
    model = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(model.lm_head.weight, saved["model.embed_tokens.weight"])
