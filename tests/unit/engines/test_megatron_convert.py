"""HF <-> Megatron weight conversion (``engines/train/megatron/convert.py``), tensors only.

- Layouts against formulas written independently of the piece table: ``linear_qkv`` grouped
  per KV head ``[q_g; k_g; v_g]`` and cut by groups, ``linear_fc1`` as ``[gate_r; up_r]`` per
  tensor-parallel rank, row-parallel ``linear_proj`` / ``linear_fc2``, the vocabulary padded.
- Round trip HF -> the local shards of every tensor-parallel rank -> HF is bit-exact for every
  tensor of a Llama, Qwen2 (qkv bias) and Qwen3 (QK-norm) config, each tied and untied, at tp
  1, 2, 4 (the parameter count, vocabulary padding aside, equals HF's);
  the checkpoint chunks of all ranks reassemble the HF tensors as well.
"""

from __future__ import annotations

import pytest
import torch

from logics_rl.engines.train.megatron import convert

CONFIGS = {
    # (model_type, tied, vocab): vocab 50 is not a multiple of 4 (padding rows at tp 4)
    "llama": ("llama", False, 50),
    "llama_tied": ("llama", True, 50),
    "qwen2": ("qwen2", False, 48),
    "qwen2_tied": ("qwen2", True, 48),
    "qwen3": ("qwen3", True, 50),
    "qwen3_untied": ("qwen3", False, 50),
}


def hf_config(kind: str):
    from transformers import AutoConfig

    model_type, tied, vocab = CONFIGS[kind]
    return AutoConfig.for_model(
        model_type,
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=4,
        tie_word_embeddings=tied,
    )


def megatron_names(s: convert.Shape, pp_stage_layers: int) -> list[str]:
    """The parameter names of the local layer spec (as ``GPTModel.state_dict`` lists them)."""
    layer = ["input_layernorm.weight", "self_attention.linear_qkv.weight"]
    if s.qkv_bias:
        layer.append("self_attention.linear_qkv.bias")
    if s.qk_norm:
        layer += ["self_attention.q_layernorm.weight", "self_attention.k_layernorm.weight"]
    layer += [
        "self_attention.linear_proj.weight",
        "pre_mlp_layernorm.weight",
        "mlp.linear_fc1.weight",
        "mlp.linear_fc2.weight",
    ]
    names = ["embedding.word_embeddings.weight"]
    names += [f"decoder.layers.{i}.{n}" for i in range(pp_stage_layers) for n in layer]
    names.append("decoder.final_layernorm.weight")
    if not s.tied:
        names.append("output_layer.weight")
    return names


def local_shape(name: str, s: convert.Shape, tp: int) -> tuple[int, ...]:
    """The local tensor's shape on one tp rank, from Megatron's own sizing rules."""
    d, H = s.head_dim, s.hidden
    qkv = (s.heads + 2 * s.groups) * d // tp
    rules = {
        "embedding.word_embeddings.weight": (s.padded_vocab(tp) // tp, H),
        "output_layer.weight": (s.padded_vocab(tp) // tp, H),
        "decoder.final_layernorm.weight": (H,),
        "input_layernorm.weight": (H,),
        "pre_mlp_layernorm.weight": (H,),
        "self_attention.linear_qkv.weight": (qkv, H),
        "self_attention.linear_qkv.bias": (qkv,),
        "self_attention.q_layernorm.weight": (d,),
        "self_attention.k_layernorm.weight": (d,),
        "self_attention.linear_proj.weight": (H, s.heads * d // tp),
        "mlp.linear_fc1.weight": (2 * s.ffn // tp, H),
        "mlp.linear_fc2.weight": (H, s.ffn // tp),
    }
    key = name if name in rules else name.split(".", 3)[3]
    return rules[key]


def random_hf(s: convert.Shape, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(shape, generator=g) for n, shape in convert.hf_shapes(s).items()}


def shards_of(s, hf, tp: int) -> dict[str, list[torch.Tensor]]:
    out = {}
    for name in megatron_names(s, s.layers):
        out[name] = []
        for r in range(tp):
            local = torch.full(local_shape(name, s, tp), float("nan"))
            convert.local_from_hf(local, convert.pieces(name, s, tp, r), hf)
            out[name].append(local)
    return out


@pytest.mark.parametrize("kind", sorted(CONFIGS))
@pytest.mark.parametrize("tp", [1, 2, 4])
def test_round_trip_is_bit_exact(kind, tp):
    s = convert.Shape.of(hf_config(kind))
    hf = random_hf(s)
    shards = shards_of(s, hf, tp)
    back: dict[str, torch.Tensor] = {}
    for name, locals_ in shards.items():
        assert all(not t.isnan().any() for t in locals_), f"{name}: a value was never filled"
        for hf_name, t in convert.hf_from_shards(name, locals_, s):
            assert hf_name not in back, f"{hf_name} produced twice"
            back[hf_name] = t
    assert sorted(back) == sorted(hf)
    for n in hf:
        assert torch.equal(back[n], hf[n]), n
    # parameter count: Megatron's (without vocabulary padding) equals HF's
    n_megatron = sum(
        t.numel()
        for name, locals_ in shards.items()
        for t in (locals_ if convert.tp_cut(name) else locals_[:1])
    )
    padding = (s.padded_vocab(tp) - s.vocab) * s.hidden * (1 if s.tied else 2)
    assert n_megatron - padding == sum(t.numel() for t in hf.values())


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_checkpoint_chunks_reassemble_every_hf_tensor(kind):
    s = convert.Shape.of(hf_config(kind))
    hf = random_hf(s, seed=1)
    tp = 2
    shards = shards_of(s, hf, tp)
    rebuilt = {n: torch.full(t.shape, float("nan")) for n, t in hf.items()}
    for name, locals_ in shards.items():
        for r, local in enumerate(locals_):
            for hf_name, (data, shape, offset) in convert.local_chunks(
                name, local, s, tp, r
            ).items():
                assert list(shape) == list(hf[hf_name].shape)
                region = tuple(slice(o, o + n) for o, n in zip(offset, data.shape))
                rebuilt[hf_name][region] = data
            # and back: a rank's local tensor from its own chunks
            chunks = {k: v[0] for k, v in convert.local_chunks(name, local, s, tp, r).items()}
            again = torch.full(local.shape, float("nan"))
            convert.local_from_chunks(name, again, chunks, s, tp, r)
            assert torch.equal(again, local), name
    for n in hf:
        assert torch.equal(rebuilt[n], hf[n]), n


def test_layouts_match_megatron_formulas():
    s = convert.Shape.of(hf_config("qwen2"))
    hf = random_hf(s, seed=2)
    p = "model.layers.1"
    q, k, v = (hf[f"{p}.self_attn.{x}_proj.weight"] for x in "qkv")
    d, G, H = s.head_dim, s.groups, s.hidden
    grouped = torch.cat(
        [q.view(G, s.heads // G * d, H), k.view(G, d, H), v.view(G, d, H)], dim=1
    ).reshape(-1, H)
    qb, kb, vb = (hf[f"{p}.self_attn.{x}_proj.bias"] for x in "qkv")
    grouped_b = torch.cat([qb.view(G, -1), kb.view(G, d), vb.view(G, d)], dim=1).reshape(-1)
    gate, up = hf[f"{p}.mlp.gate_proj.weight"], hf[f"{p}.mlp.up_proj.weight"]
    for tp in (1, 2, 4):
        sh = shards_of(s, hf, tp)
        for r in range(tp):
            assert torch.equal(
                sh["decoder.layers.1.self_attention.linear_qkv.weight"][r],
                grouped.chunk(tp)[r],
            )
            assert torch.equal(
                sh["decoder.layers.1.self_attention.linear_qkv.bias"][r], grouped_b.chunk(tp)[r]
            )
            assert torch.equal(
                sh["decoder.layers.1.mlp.linear_fc1.weight"][r],
                torch.cat([gate.chunk(tp)[r], up.chunk(tp)[r]]),
            )
            assert torch.equal(
                sh["decoder.layers.1.mlp.linear_fc2.weight"][r],
                hf[f"{p}.mlp.down_proj.weight"].chunk(tp, dim=1)[r],
            )
            assert torch.equal(
                sh["decoder.layers.1.self_attention.linear_proj.weight"][r],
                hf[f"{p}.self_attn.o_proj.weight"].chunk(tp, dim=1)[r],
            )
            emb = sh["embedding.word_embeddings.weight"][r]
            padded = torch.cat([hf["model.embed_tokens.weight"], torch.zeros(2, H)])  # 48 -> 48
            rows = s.padded_vocab(tp) // tp
            assert torch.equal(emb, padded[: s.padded_vocab(tp)][r * rows : (r + 1) * rows])


def test_pipeline_stage_names_map_to_global_layers():
    s = convert.Shape.of(hf_config("qwen3"))
    parts = convert.pieces("decoder.layers.0.mlp.linear_fc2.weight", s, 1, 0, layer_offset=1)
    assert [p.hf_name for p in parts] == ["model.layers.1.mlp.down_proj.weight"]
    # a tied model's output layer (a last pipeline stage's copy) reads the embedding
    out = convert.pieces("output_layer.weight", s, 2, 1)
    assert [(p.hf_name, p.start, p.length) for p in out] == [("model.embed_tokens.weight", 25, 25)]


def test_unsupported_models_are_refused_by_name():
    from transformers import AutoConfig

    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        convert.Shape.of(AutoConfig.for_model("gpt2"))
    cfg = hf_config("llama")
    cfg.rope_parameters = {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}
    with pytest.raises(ValueError, match="rope_type 'llama3'"):
        convert.Shape.of(cfg)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        convert.Shape.of(hf_config("qwen3")).check_tp(8)
