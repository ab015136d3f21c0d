"""HF causal LMs (Llama, Qwen2, Qwen3) as megatron-core ``GPTModel``s, and their weights both ways.

One table says where every value of a Megatron parameter lives in the HF checkpoint:
``pieces(name, ...)`` cuts a rank's local tensor (its tensor-parallel shard) along one dimension
into runs, each a contiguous slice of one HF tensor. Loading fills the local tensor from those
slices; export gathers the shards of the tensor-parallel group and places every run; checkpoints
store each rank's runs as chunks of the HF tensors (``shards.py``), so they read back at any
tensor / pipeline layout and export without Megatron.

Layouts (megatron-core 0.16, local layer spec):
- ``linear_qkv`` [(q + 2 kv) x d, H]: grouped per KV head, ``[q heads of group g; k_g; v_g]``
  for g in 0..G-1; tensor parallel cuts whole groups, so rank r holds groups r*G/tp.. in order.
- ``linear_fc1`` [2 F / tp, H] on each rank: ``[gate_r; up_r]``, gate and up each cut in tp
  chunks (not the full ``[gate; up]`` cut in two).
- ``linear_proj`` and ``linear_fc2`` are row parallel (cut along the input dimension); the word
  embedding and the output layer are cut along the vocabulary, padded to a multiple of tp
  (the padded rows are zero and never produce a logit, see ``logprob.py``).
- Norms (and qkv norms) are whole on every rank.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

# model_type -> (qkv bias, qk norm)
FAMILIES = {"llama": (False, False), "qwen2": (True, False), "qwen3": (False, True)}


@dataclass(frozen=True)
class Shape:
    """The sizes the conversion needs, from a HF config."""

    vocab: int
    hidden: int
    ffn: int
    layers: int
    heads: int
    groups: int  # KV heads
    head_dim: int
    tied: bool
    qkv_bias: bool
    qk_norm: bool

    @classmethod
    def of(cls, hf: Any) -> Shape:
        kind = getattr(hf, "model_type", None)
        if kind not in FAMILIES:
            raise ValueError(
                f"model_type {kind!r} has no Megatron conversion; supported: {', '.join(FAMILIES)}"
            )
        qkv_bias, qk_norm = FAMILIES[kind]
        if kind == "llama" and (getattr(hf, "attention_bias", False) or hf.mlp_bias):
            raise ValueError("a llama config with attention_bias or mlp_bias is not supported")
        rope = getattr(hf, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(
                f"rope_parameters.rope_type {rope.get('rope_type')!r} is not supported by the "
                "Megatron engine (only 'default')"
            )
        heads = hf.num_attention_heads
        return cls(
            vocab=hf.vocab_size,
            hidden=hf.hidden_size,
            ffn=hf.intermediate_size,
            layers=hf.num_hidden_layers,
            heads=heads,
            groups=getattr(hf, "num_key_value_heads", None) or heads,
            head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // heads,
            tied=bool(getattr(hf, "tie_word_embeddings", False)),
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
        )

    def padded_vocab(self, tp: int) -> int:
        return math.ceil(self.vocab / tp) * tp

    def check_tp(self, tp: int) -> None:
        for what, n in (("num_key_value_heads", self.groups), ("intermediate_size", self.ffn)):
            if n % tp:
                raise ValueError(f"tensor parallel {tp} does not divide the model's {what} ({n})")


def rope_theta(hf: Any) -> float:
    rope = getattr(hf, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0)))


def layer_split(layers: int, pp: int) -> list[tuple[int, int]]:
    """(first layer, layer count) of each pipeline stage: as even as possible, the earlier
    stages taking the remainder (Megatron's uneven split needs the same counts, see
    ``transformer_config``)."""
    if layers < pp:
        raise ValueError(f"pipeline parallel {pp} exceeds the model's {layers} layers")
    base, extra = divmod(layers, pp)
    out, start = [], 0
    for s in range(pp):
        n = base + (1 if s < extra else 0)
        out.append((start, n))
        start += n
    return out


# --------------------------------------------------------------------------- the piece table
@dataclass(frozen=True)
class Piece:
    """Local rows / columns ``[local, local + length)`` along ``dim`` are the HF tensor
    ``hf_name``'s ``[start, start + length)`` along the same dim (the other dim is whole)."""

    hf_name: str
    dim: int
    local: int
    start: int
    length: int


def _layer_pieces(rest: str, hf_layer: str, s: Shape, tp: int, r: int) -> list[Piece]:
    d = s.head_dim
    per_group = s.heads // s.groups
    if rest in ("self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias"):
        suffix = rest.rsplit(".", 1)[1]
        out, pos = [], 0
        g_lo, g_hi = r * s.groups // tp, (r + 1) * s.groups // tp
        for g in range(g_lo, g_hi):
            for proj, start, n in (
                ("q_proj", g * per_group * d, per_group * d),
                ("k_proj", g * d, d),
                ("v_proj", g * d, d),
            ):
                out.append(Piece(f"{hf_layer}.self_attn.{proj}.{suffix}", 0, pos, start, n))
                pos += n
        return out
    f = s.ffn // tp
    simple = {
        "input_layernorm.weight": ("input_layernorm.weight", 0, 0, s.hidden),
        "pre_mlp_layernorm.weight": ("post_attention_layernorm.weight", 0, 0, s.hidden),
        "self_attention.q_layernorm.weight": ("self_attn.q_norm.weight", 0, 0, d),
        "self_attention.k_layernorm.weight": ("self_attn.k_norm.weight", 0, 0, d),
        "self_attention.linear_proj.weight": (
            "self_attn.o_proj.weight",
            1,
            r * s.heads * d // tp,
            s.heads * d // tp,
        ),
        "mlp.linear_fc2.weight": ("mlp.down_proj.weight", 1, r * f, f),
    }
    if rest in simple:
        name, dim, start, n = simple[rest]
        return [Piece(f"{hf_layer}.{name}", dim, 0, start, n)]
    if rest == "mlp.linear_fc1.weight":
        return [
            Piece(f"{hf_layer}.mlp.gate_proj.weight", 0, 0, r * f, f),
            Piece(f"{hf_layer}.mlp.up_proj.weight", 0, f, r * f, f),
        ]
    raise KeyError(rest)


def pieces(name: str, s: Shape, tp: int, r: int, layer_offset: int = 0) -> list[Piece]:
    """Where the local tensor ``name`` (a Megatron state-dict name on tensor-parallel rank
    ``r`` of ``tp``, on a pipeline stage whose first layer is ``layer_offset``) lives in HF."""
    if name in ("embedding.word_embeddings.weight", "output_layer.weight"):
        hf_name = "model.embed_tokens.weight"
        if name == "output_layer.weight" and not s.tied:
            hf_name = "lm_head.weight"
        rows = s.padded_vocab(tp) // tp
        lo = r * rows
        n = max(0, min(rows, s.vocab - lo))
        return [Piece(hf_name, 0, 0, lo, n)] if n else []
    if name == "decoder.final_layernorm.weight":
        return [Piece("model.norm.weight", 0, 0, 0, s.hidden)]
    prefix = "decoder.layers."
    if name.startswith(prefix):
        idx, rest = name[len(prefix) :].split(".", 1)
        try:
            return _layer_pieces(rest, f"model.layers.{layer_offset + int(idx)}", s, tp, r)
        except KeyError:
            pass
    raise KeyError(f"no HF counterpart for Megatron parameter {name!r}")


def tp_cut(name: str) -> bool:
    """Whether tensor parallelism cuts Megatron parameter ``name`` (else every tp rank holds
    all of it: the norms)."""
    return not name.endswith("layernorm.weight")


@functools.lru_cache(maxsize=8)
def hf_shapes(s: Shape) -> dict[str, tuple[int, ...]]:
    """Every HF parameter of the model (a tied model has no ``lm_head.weight``), in order.
    Cached: export and checkpoints look it up per parameter (read it, never change it)."""
    d, H = s.head_dim, s.hidden
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (s.vocab, H)}
    for i in range(s.layers):
        p = f"model.layers.{i}"
        out[f"{p}.input_layernorm.weight"] = (H,)
        for proj, n in (
            ("q_proj", s.heads * d),
            ("k_proj", s.groups * d),
            ("v_proj", s.groups * d),
        ):
            out[f"{p}.self_attn.{proj}.weight"] = (n, H)
            if s.qkv_bias:
                out[f"{p}.self_attn.{proj}.bias"] = (n,)
        if s.qk_norm:
            out[f"{p}.self_attn.q_norm.weight"] = (d,)
            out[f"{p}.self_attn.k_norm.weight"] = (d,)
        out[f"{p}.self_attn.o_proj.weight"] = (H, s.heads * d)
        out[f"{p}.post_attention_layernorm.weight"] = (H,)
        out[f"{p}.mlp.gate_proj.weight"] = (s.ffn, H)
        out[f"{p}.mlp.up_proj.weight"] = (s.ffn, H)
        out[f"{p}.mlp.down_proj.weight"] = (H, s.ffn)
    out["model.norm.weight"] = (H,)
    if not s.tied:
        out["lm_head.weight"] = (s.vocab, H)
    return out


def _slice(t: torch.Tensor, dim: int, start: int, n: int) -> torch.Tensor:
    return t.narrow(dim, start, n)


def fill_local(
    local: torch.Tensor, parts: list[Piece], read: Callable[[str, int, int, int], torch.Tensor]
) -> None:
    """Fill ``local`` (in place) from HF slices: ``read(hf_name, dim, start, n)``; rows no piece
    covers (vocabulary padding) are zeroed."""
    with torch.no_grad():
        if sum(p.length for p in parts) != local.shape[parts[0].dim if parts else 0]:
            local.zero_()
        for p in parts:
            _slice(local, p.dim, p.local, p.length).copy_(read(p.hf_name, p.dim, p.start, p.length))


def local_from_hf(local: torch.Tensor, parts: list[Piece], hf: dict[str, torch.Tensor]) -> None:
    """``fill_local`` from full HF tensors in memory."""
    fill_local(local, parts, lambda n, dim, start, k: _slice(hf[n], dim, start, k))


def hf_from_shards(
    name: str, shards: list[torch.Tensor], s: Shape, layer_offset: int = 0
) -> Iterator[tuple[str, torch.Tensor]]:
    """The HF tensors of Megatron parameter ``name``, given its local tensor on every
    tensor-parallel rank (in rank order). A tensor split over several Megatron parameters does
    not occur in these families: every HF tensor is complete after one parameter."""
    tp = len(shards)
    full: dict[str, torch.Tensor] = {}
    shapes = hf_shapes(s)
    for r, local in enumerate(shards):
        for p in pieces(name, s, tp, r, layer_offset):
            if p.hf_name not in full:
                full[p.hf_name] = local.new_empty(shapes[p.hf_name])
            _slice(full[p.hf_name], p.dim, p.start, p.length).copy_(
                _slice(local, p.dim, p.local, p.length)
            )
    yield from full.items()


def local_chunks(
    name: str, local: torch.Tensor, s: Shape, tp: int, r: int, layer_offset: int = 0
) -> dict[str, tuple[torch.Tensor, list[int], list[int]]]:
    """This rank's part of each HF tensor that ``name`` holds: ``{hf_name: (data, global
    shape, offset)}``. Pieces of one HF tensor that are consecutive there (the q heads of a
    rank's KV groups) are joined into one chunk."""
    shapes = hf_shapes(s)
    by_name: dict[str, list[Piece]] = {}
    for p in pieces(name, s, tp, r, layer_offset):
        by_name.setdefault(p.hf_name, []).append(p)
    out = {}
    for hf_name, ps in by_name.items():
        dim = ps[0].dim
        for a, b in zip(ps, ps[1:]):
            if b.start != a.start + a.length:
                raise AssertionError(f"{name}: pieces of {hf_name} are not contiguous in HF")
        data = torch.cat([_slice(local, dim, p.local, p.length) for p in ps], dim=dim)
        offset = [0] * len(shapes[hf_name])
        offset[dim] = ps[0].start
        out[hf_name] = (data, list(shapes[hf_name]), offset)
    return out


def local_from_chunks(
    name: str,
    local: torch.Tensor,
    chunks: dict[str, torch.Tensor],
    s: Shape,
    tp: int,
    r: int,
    layer_offset: int = 0,
) -> None:
    """Inverse of ``local_chunks``: fill ``local`` from the joined chunks (as read back)."""
    used: dict[str, int] = {}

    def read(hf_name: str, dim: int, start: int, n: int) -> torch.Tensor:
        k = used.get(hf_name, 0)
        used[hf_name] = k + n
        return _slice(chunks[hf_name], dim, k, n)

    fill_local(local, pieces(name, s, tp, r, layer_offset), read)
