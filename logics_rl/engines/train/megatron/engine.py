"""Megatron-core training engine: tensor and pipeline parallel ``GPTModel`` from a HF model.

- Layout: megatron-core's process groups over the worker group's ``torch.distributed`` world
  (order tp, cp, dp, pp: the ranks of one tensor-parallel group are consecutive). Every rank of
  one data-parallel replica gets the same rows; the last pipeline stage's tensor-parallel rank 0
  returns them (``ParallelInfo.collects``).
- Model: the local layer spec (no Transformer Engine or Apex), weights converted from the HF
  checkpoint by ``convert.py`` at load, parameters in float32; ``dtype: bfloat16`` is autocast
  over them (CPU and GPU alike), log-probs and the loss in float32.
- Micro-batches: right-padded rows with an explicit causal + padding mask (the local spec has no
  packed-sequence attention), cut by ``packing.length_buckets`` like the FSDP2 engine's CPU
  layout, so both engines see the same micro-batches. They run through megatron-core's
  forward-backward schedule (1F1B across pipeline stages; shapes are sent with each micro-batch).
- Log-probs and entropy come from the vocab-parallel LM head without gathering the vocabulary
  (``logprob.VocabShard``). Sequence parallelism (``parallel.sequence``) runs the norms on a
  slice of the sequence (``SequenceParallelRMSNorm``) and gathers it before the LM head.
- Activation recomputation: megatron-core's (full, per layer) on GPU; on CPU torch's checkpoint
  around each layer, since megatron's saves and restores CUDA RNG states.
- Gradients: plain autograd into ``param.grad``; at the optimizer step they are summed over the
  data-parallel group (the loss is globally normalised), q/k-norm (and sequence-parallel) grads
  over the tensor-parallel group, and a tied embedding's over its first and last stage, as
  megatron-core's ``finalize_model_grads`` does. Clipping by the global norm across the
  model-parallel group, then the same fused AdamW and schedule as the FSDP2 engine.
- Checkpoints: every rank writes its parameters and Adam moments as chunks of the HF tensors
  (``shards.Chunk``): readable at any tensor / pipeline layout, and exported without Megatron.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from logics_rl.checkpoint import read_json
from logics_rl.config.schema import TrainEngineConfig
from logics_rl.engines.train.base import (
    MODEL_FILES,
    LogProbs,
    LossFn,
    MicroBatchLosses,
    ParallelInfo,
    TrainEngine,
)
from logics_rl.engines.train.logprob import VocabShard, token_logprobs
from logics_rl.engines.train.megatron import convert
from logics_rl.engines.train.megatron.cpu import cpu_mode, patch_cuda_device
from logics_rl.engines.train.optim import build_optimizer
from logics_rl.engines.train.packing import Packed, length_buckets, pack, sample_lengths
from logics_rl.engines.train.shards import SHARDS, Chunk, load_state, save_state
from logics_rl.models.hf import write_hf_dir
from logics_rl.protocol import Batch

_TRAIN_KEYS = ("prompt_ids", "prompt_mask", "response_ids", "response_mask")

# megatron-core's own notices that ask nothing of the user, silenced where they arise (before
# megatron-core is imported): it uses its torch implementations without Transformer Engine /
# Apex (the local spec asks for exactly that); its TransformerConfig default trips its own
# cuda_graph_scope deprecation; it calls torch.distributed collectives under names torch 2.13
# deprecated (same collectives); it suggests CUDA_DEVICE_MAX_CONNECTIONS=1 for overlapping
# sequence-parallel communication, which this engine does not enable. And torch's note that a
# norm with float32 weights (kept so by design) and bfloat16 input under CPU autocast takes its
# unfused kernel.
_UPSTREAM_NOTICES = (
    r"(Transformer Engine and )?Apex (is|are) not installed\. Falling back",
    r"full scope is deprecated\. Use empty cuda_graph_scope",
    r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor|_all_gather_base|"
    r"_reduce_scatter_base)` is deprecated",
    r"When using sequence parallelism it is recommended to set the environment variable "
    r"CUDA_DEVICE_MAX_CONNECTIONS",
    r"Mismatch dtype between input and weight: input dtype = c10::BFloat16, weight dtype = float",
)


def _silence_upstream_notices() -> None:
    import warnings

    for pattern in _UPSTREAM_NOTICES:
        warnings.filterwarnings("ignore", message=pattern)


def transformer_config(shape: convert.Shape, hf, cfg: TrainEngineConfig):
    """megatron-core's ``TransformerConfig`` for the HF model under ``cfg.parallel``."""
    from megatron.core.transformer import TransformerConfig

    p = cfg.parallel
    recompute = {}
    if cfg.activation_checkpointing and torch.cuda.is_available():  # CPU: _checkpoint_layers
        recompute = dict(
            recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1
        )
    return TransformerConfig(
        num_layers=shape.layers,
        hidden_size=shape.hidden,
        ffn_hidden_size=shape.ffn,
        num_attention_heads=shape.heads,
        num_query_groups=shape.groups,
        kv_channels=shape.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=float(hf.rms_norm_eps),
        gated_linear_unit=True,
        activation_func=torch.nn.functional.silu,
        add_bias_linear=False,
        add_qkv_bias=shape.qkv_bias,
        qk_layernorm=shape.qk_norm,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        params_dtype=torch.float32,
        pipeline_dtype=torch.float32,
        batch_p2p_comm=torch.cuda.is_available(),  # gloo has no batched isend / irecv
        tensor_model_parallel_size=p.tensor,
        pipeline_model_parallel_size=p.pipeline,
        context_parallel_size=p.context,
        sequence_parallel=p.sequence and p.tensor > 1,
        variable_seq_lengths=True,  # micro-batches differ in rows and length
        moe_token_dispatcher_type="alltoall",  # the default refuses variable lengths (dense too)
        calculate_per_token_loss=True,  # the loss is normalised by the caller
        use_cpu_initialization=True,
        # fusions need CUDA kernels (Apex / TE / custom): off, everywhere for now
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        persist_layer_norm=False,
        bias_activation_fusion=False,
        **recompute,
    )


class HeadRMSNorm(torch.nn.RMSNorm):
    """torch's RMSNorm built the way megatron-core builds norms (its torch-norm wrapper refuses
    any model with sequence parallelism, even for the q / k norms over head dimensions)."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, **_):
        super().__init__(hidden_size, eps=eps)


class SequenceParallelRMSNorm(HeadRMSNorm):
    """A hidden-size norm under sequence parallelism: each rank norms its part of the
    sequence, so the weight is marked ``sequence_parallel`` and its gradient summed over
    tensor-parallel ranks."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, **_):
        super().__init__(config, hidden_size, eps)
        self.weight.sequence_parallel = True


def layer_spec(shape: convert.Shape, sequence_parallel: bool, local_layers: int):
    """The local layer spec; with sequence parallelism a block spec whose hidden-size norms
    (input, pre-MLP, final) are ``SequenceParallelRMSNorm`` and q / k norms ``HeadRMSNorm``."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

    spec = get_gpt_layer_local_spec(qk_layernorm=shape.qk_norm, normalization="RMSNorm")
    if not sequence_parallel:
        return spec
    spec.submodules.input_layernorm = SequenceParallelRMSNorm
    spec.submodules.pre_mlp_layernorm = SequenceParallelRMSNorm
    if shape.qk_norm:
        attention = spec.submodules.self_attention.submodules
        attention.q_layernorm = attention.k_layernorm = HeadRMSNorm
    return TransformerBlockSubmodules(
        layer_specs=[spec] * local_layers, layer_norm=SequenceParallelRMSNorm
    )


class _MegatronLM(nn.Module):
    """One pipeline stage of the GPT model; the last one ends in vocab-parallel log-probs."""

    def __init__(self, gpt: nn.Module, shape: convert.Shape, autocast: torch.dtype | None):
        super().__init__()
        self.gpt = gpt
        self.config, self.model_type = gpt.config, gpt.model_type  # read by the schedules
        self.shape = shape
        self.autocast = autocast

    def set_input_tensor(self, tensor) -> None:  # the pipeline schedule hands stage inputs here
        self.gpt.set_input_tensor(tensor)

    def lm_head(self) -> tuple[torch.Tensor, VocabShard | None]:
        """This rank's valid rows of the output weight (vocabulary padding cut off)."""
        from megatron.core import parallel_state as mpu

        weight = self.gpt.shared_embedding_or_output_weight() if self.shape.tied else None
        if weight is None:
            weight = self.gpt.output_layer.weight
        tp, r = mpu.get_tensor_model_parallel_world_size(), mpu.get_tensor_model_parallel_rank()
        rows = weight.shape[0]
        valid = max(0, min(rows, self.shape.vocab - r * rows))
        shard = VocabShard(mpu.get_tensor_model_parallel_group(), r * rows) if tp > 1 else None
        return weight[:valid], shard

    def forward(
        self, mb: dict, temperature: float, with_entropy: bool, chunk: int, keep_bytes: int = 0
    ):
        from megatron.core.tensor_parallel import (
            copy_to_tensor_model_parallel_region,
            gather_from_sequence_parallel_region,
        )

        gpt = self.gpt
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.autocast(device_type, dtype=self.autocast, enabled=self.autocast is not None):
            pre = gpt._preprocess(input_ids=mb["input_ids"], position_ids=mb["position_ids"])
            decoder_input, rotary, cos, sin, offset = pre[:5]
            hidden = gpt.decoder(
                hidden_states=decoder_input,
                attention_mask=mb["mask"],
                rotary_pos_emb=rotary,
                rotary_pos_cos=cos,
                rotary_pos_sin=sin,
                sequence_len_offset=offset,
            )
        if not gpt.post_process:
            return hidden
        sequence_parallel = self.config.sequence_parallel
        if sequence_parallel:  # all-gather the sequence; backward: reduce-scatter (sums over tp)
            hidden = gather_from_sequence_parallel_region(hidden)
        # [s, b, h] -> the positions that predict a response token
        hidden = hidden.transpose(0, 1).flatten(0, 1)[mb["predict_pos"]].float()
        weight, shard = self.lm_head()
        if shard is not None and not sequence_parallel:
            hidden = copy_to_tensor_model_parallel_region(hidden)  # its grad sums over tp
        with torch.autocast(device_type, enabled=False):  # logits and log-probs stay float32
            return token_logprobs(
                hidden,
                weight,
                mb["targets"],
                temperature=temperature,
                with_entropy=with_entropy,
                chunk=chunk,
                shard=shard,
                keep_bytes=keep_bytes,
                grad_dtype=self.autocast,
            )


def _checkpoint_layers(gpt: nn.Module) -> None:
    """Activation recomputation per decoder layer with torch's checkpoint, for CPU: megatron's
    recompute saves and restores CUDA RNG states (dropout is off here, so no RNG is replayed)."""
    from torch.utils.checkpoint import checkpoint

    for layer in gpt.decoder.layers:
        forward = layer.forward

        def run(*args, _forward=forward, **kwargs):
            if not torch.is_grad_enabled():
                return _forward(*args, **kwargs)
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        layer.forward = run


def _inputs(packed: Packed, device: torch.device) -> dict:
    """The padded micro-batch as model inputs: a bool mask [B, 1, L, L], True = masked."""
    valid = packed.attention_mask.bool()
    L = valid.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool).triu_(1)
    mask = causal[None, None] | ~valid[:, None, None, :]
    return {
        "input_ids": packed.input_ids.to(device),
        "position_ids": packed.position_ids.to(device),
        "mask": mask.to(device),
        "predict_pos": packed.predict_pos.to(device),
        "targets": packed.targets.to(device),
    }


class MegatronEngine(TrainEngine):
    """A HF causal LM as a megatron-core GPTModel, tensor / pipeline parallel."""

    kind = "megatron"

    def __init__(
        self,
        model_path: str,
        cfg: TrainEngineConfig,
        *,
        trainable: bool = True,
        total_steps: int = 1,
        seed: int = 0,
    ):
        from transformers import AutoConfig

        _silence_upstream_notices()
        patch_cuda_device()
        self._setup(model_path, cfg, trainable)
        self.hf_config = AutoConfig.from_pretrained(model_path)
        self.shape = convert.Shape.of(self.hf_config)
        p = cfg.parallel
        if p.context != 1 or p.expert != 1:
            raise ValueError(
                "actor.parallel.context and .expert must be 1: the Megatron engine runs dense "
                "models without context parallelism so far"
            )
        self.shape.check_tp(p.tensor)
        if self.shape.layers % p.pipeline:
            raise ValueError(
                f"pipeline parallel {p.pipeline} does not divide the model's "
                f"{self.shape.layers} layers"
            )
        self._init_parallel(seed)
        torch.manual_seed(seed)
        self.module = self._build()
        self._load_hf()
        if not trainable:
            self.module.requires_grad_(False)
        self.optimizer = self.scheduler = None
        if trainable:
            self.optimizer, self.scheduler = build_optimizer(
                cfg.optim, self._params(), total_steps, fused=True
            )

    # ------------------------------------------------------------------ layout
    def _init_parallel(self, seed: int) -> None:
        from megatron.core import parallel_state as mpu
        from megatron.core import tensor_parallel

        p = self.cfg.parallel
        if mpu.model_parallel_is_initialized():
            have = (
                mpu.get_tensor_model_parallel_world_size(),
                mpu.get_pipeline_model_parallel_world_size(),
            )
            if have != (p.tensor, p.pipeline):
                raise ValueError(
                    f"this process already runs Megatron at tensor x pipeline {have}; a second "
                    f"engine asked for {(p.tensor, p.pipeline)} (actor and ref must agree)"
                )
        else:
            mpu.initialize_model_parallel(
                tensor_model_parallel_size=p.tensor,
                pipeline_model_parallel_size=p.pipeline,
                create_gloo_process_groups=self.on_gpu,  # on CPU the default group is gloo
            )
            tensor_parallel.model_parallel_cuda_manual_seed(seed, inference_rng_tracker=True)
        self.tp = mpu.get_tensor_model_parallel_world_size()
        self.tp_rank = mpu.get_tensor_model_parallel_rank()
        self.pp = mpu.get_pipeline_model_parallel_world_size()
        self.pp_rank = mpu.get_pipeline_model_parallel_rank()
        self.dp_group = mpu.get_data_parallel_group()
        self.tp_group = mpu.get_tensor_model_parallel_group()
        self.pp_group = mpu.get_pipeline_model_parallel_group()
        self.mp_group = mpu.get_model_parallel_group()
        self.parallel = ParallelInfo(
            dp_rank=mpu.get_data_parallel_rank(),
            dp_size=mpu.get_data_parallel_world_size(),
            tp_rank=self.tp_rank,
            tp_size=self.tp,
            pp_rank=self.pp_rank,
            pp_size=self.pp,
        )
        self.layer_offset = self.pp_rank * (self.shape.layers // self.pp)
        self.first_stage = self.pp_rank == 0
        self.last_stage = self.pp_rank == self.pp - 1

    def _build(self) -> _MegatronLM:
        from megatron.core.models.gpt import GPTModel

        self.tcfg = transformer_config(self.shape, self.hf_config, self.cfg)
        self.sp = bool(self.tcfg.sequence_parallel)
        spec = layer_spec(self.shape, self.sp, self.shape.layers // self.pp)
        with cpu_mode():  # a tied embedding's last-stage copy is moved with .cuda()
            gpt = GPTModel(
                self.tcfg,
                spec,
                vocab_size=self.shape.padded_vocab(self.tp),
                max_sequence_length=int(self.hf_config.max_position_embeddings),
                pre_process=self.first_stage,
                post_process=self.last_stage,
                share_embeddings_and_output_weights=self.shape.tied,
                position_embedding_type="rope",
                rotary_base=convert.rope_theta(self.hf_config),
            )
        if self.cfg.activation_checkpointing and not self.on_gpu and self.trainable:
            _checkpoint_layers(gpt)
        low = self.dtype if self.dtype != torch.float32 else None
        return _MegatronLM(gpt, self.shape, low).to(self.device)

    def _local_params(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(Megatron name, tensor) of this rank's parameters (``_extra_state`` left out)."""
        for name, t in self.module.gpt.state_dict(keep_vars=True).items():
            if name.endswith("_extra_state") or t is None:
                continue
            yield name, t

    def _params(self) -> list[nn.Parameter]:
        return [p for p in self.module.parameters() if p.requires_grad]

    def _load_hf(self) -> None:
        """Fill this rank's shards from the HF safetensors, reading only the slices it holds."""
        from logics_rl.models.hf import safetensors_slices

        with safetensors_slices(self.model_path) as read:
            for name, t in self._local_params():
                parts = convert.pieces(name, self.shape, self.tp, self.tp_rank, self.layer_offset)
                convert.fill_local(t.data, parts, read)

    def all_reduce_dp(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.parallel.dp_size > 1:
            dist.all_reduce(tensor, group=self.dp_group)
        return tensor

    # ------------------------------------------------------------------ micro-batches
    def _micro_batches(self, batch: Batch) -> list[list[int]]:
        """Row indices per micro-batch, as the FSDP2 engine's padded layout cuts them; the count
        is agreed over the data-parallel group (model-parallel peers hold the same rows)."""
        if not len(batch):
            raise ValueError("a rank received no rows at all; the batch must cover every dp rank")
        lengths = sample_lengths(batch["prompt_mask"], batch["response_mask"])
        budget = self.cfg.max_tokens_per_micro_batch
        runs = length_buckets(lengths, budget)
        count = torch.tensor([len(runs)], dtype=torch.long, device=self.device)
        if self.parallel.dp_size > 1:
            dist.all_reduce(count, op=dist.ReduceOp.MAX, group=self.dp_group)
        k = int(count.item())
        return runs if k == len(runs) else length_buckets(lengths, budget, k)

    def _schedule(self, batch: Batch, micro: list[list[int]], step, *, forward_only: bool):
        """Run ``step(mb_batch, packed, rows) -> loss_func`` over the micro-batches through
        megatron-core's schedule; returns what the last stage's loss functions collected."""
        from megatron.core.pipeline_parallel import get_forward_backward_func

        prepared = []
        for rows in micro:
            mb = batch[rows] if rows else batch[:1]  # an empty one runs a zero-weight row
            packed = pack(
                *(mb[k] for k in _TRAIN_KEYS),
                layout="padded",
                width_multiple=self.tp if self.sp else 1,
            )
            prepared.append((mb, packed, rows))
        it = iter(prepared)

        def forward_step(data_iterator, model):
            mb, packed, rows = next(data_iterator)
            return model(_inputs(packed, self.device), *self._fwd_args), step(mb, packed, rows)

        # CPU, bfloat16: megatron-core's linear layers replay autocast in their backward only on
        # CUDA; under autocast around the whole schedule their bf16 gradients meet float32
        # weights as bf16 matmuls, as the forward ran them
        low = self.module.autocast
        autocast = torch.autocast("cpu", dtype=low, enabled=low is not None and not self.on_gpu)
        with cpu_mode(), autocast:
            return get_forward_backward_func()(
                forward_step_func=forward_step,
                data_iterator=it,
                model=[self.module],
                num_microbatches=len(prepared),
                seq_length=0,  # variable_seq_lengths: shapes travel with each micro-batch
                micro_batch_size=0,
                forward_only=forward_only,
            )

    def _head_args(self) -> tuple[int, int]:
        """(tokens per LM-head chunk, bytes of logits a micro-batch keeps for its backward)."""
        return self.cfg.logprob_chunk_size, self.cfg.logprob_keep_logits_mb << 20

    # ------------------------------------------------------------------ protocol
    @torch.no_grad()
    def compute_log_prob(
        self, batch: Batch, *, temperature: float, with_entropy: bool = False
    ) -> LogProbs:
        self.module.eval()
        B, R = batch["response_ids"].shape
        logp = torch.zeros(B, R, dtype=torch.float32)
        ent = torch.zeros(B, R, dtype=torch.float32) if with_entropy else None
        self._fwd_args = (temperature, with_entropy, *self._head_args())

        def step(mb, packed, rows):
            def collect(out):
                lp, e = out
                if rows:
                    logp[rows] = packed.scatter(lp.float().cpu())
                    if with_entropy:
                        ent[rows] = packed.scatter(e.float().cpu())
                zero = lp.new_zeros(())
                return zero, torch.tensor(0, dtype=torch.int), {}

            return collect

        self._schedule(batch, self._micro_batches(batch), step, forward_only=True)
        return LogProbs(logp, ent)

    def forward_backward(
        self, batch: Batch, loss_fn: LossFn, *, temperature: float, needs_entropy: bool = False
    ) -> dict[str, float]:
        if self.optimizer is None:
            raise RuntimeError("this engine was built without an optimizer (trainable=False)")
        self.module.train()
        micro = self._micro_batches(batch)
        losses = MicroBatchLosses(loss_fn, self.device, needs_entropy)
        self._fwd_args = (temperature, needs_entropy, *self._head_args())

        def step(mb, packed, rows):
            def loss_func(out):
                loss = losses.loss(mb, packed, rows, *out)
                return loss, torch.tensor(1, dtype=torch.int), {}

            return loss_func

        self._schedule(batch, micro, step, forward_only=False)
        if not self.last_stage:  # the loss lives on the last stage: count the tokens here too
            for rows in filter(None, micro):
                mb = batch[rows]
                losses.count(mb, sum(sample_lengths(mb["prompt_mask"], mb["response_mask"])))
        return losses.result(len(micro))

    # ------------------------------------------------------------------ gradients
    def _reduce_grads(self) -> None:
        """What ``finalize_model_grads`` does, for plain ``param.grad``: sum over dp; q/k-norm
        grads over tp (each rank normed only its heads), and sequence-parallel norms' (each
        rank normed its part of the sequence); a tied embedding over its stages."""
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        named = [(n, p) for n, p in self.module.gpt.named_parameters() if p.grad is not None]
        if self.parallel.dp_size > 1:
            grads = [p.grad for _, p in named]
            flat = _flatten_dense_tensors(grads)
            dist.all_reduce(flat, group=self.dp_group)
            for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
                g.copy_(synced)
        if self.tp > 1:
            for n, p in named:
                qk = self.shape.qk_norm and ("q_layernorm" in n or "k_layernorm" in n)
                if qk or getattr(p, "sequence_parallel", False):
                    dist.all_reduce(p.grad, group=self.tp_group)
        if self.shape.tied and self.pp > 1 and (self.first_stage or self.last_stage):
            from megatron.core import parallel_state as mpu

            weight = self.module.gpt.shared_embedding_or_output_weight()
            if weight.grad is None:
                weight.grad = torch.zeros_like(weight)
            dist.all_reduce(weight.grad, group=mpu.get_embedding_group())

    def _grad_norm(self) -> float:
        """The global gradient norm: tp-cut parameters summed over tp, replicated ones counted
        once, each stage's own (a tied output copy on the last stage is not counted twice)."""
        from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for name, p in self.module.gpt.named_parameters():
            if p.grad is None or not param_is_not_tensor_parallel_duplicate(p):
                continue
            if self.shape.tied and name == "output_layer.weight" and not self.first_stage:
                continue
            total += p.grad.double().pow(2).sum()
        if self.tp * self.pp > 1:
            dist.all_reduce(total, group=self.mp_group)
        return float(total.sqrt())

    def optimizer_step(self) -> dict[str, float]:
        """Reduce, clip (as ``clip_grad_norm_``), step (skipped on a non-finite norm), zero."""
        lr = self.lr
        self._reduce_grads()
        grad_norm = self._grad_norm()
        clip = self.cfg.optim.grad_clip
        if math.isfinite(grad_norm) and clip > 0:
            coef = min(1.0, clip / (grad_norm + 1e-6))
            if coef < 1.0:
                for p in self._params():
                    if p.grad is not None:
                        p.grad.mul_(coef)
        return self._step_if_finite(grad_norm, lr)

    # ------------------------------------------------------------------ export
    def _stage_names(self, stage: int) -> list[tuple[str, int]]:
        """(Megatron name, layer offset) of stage ``stage``'s parameters, as every rank can
        list them without holding that stage (its own list equals ``_local_params``)."""
        per = self.shape.layers // self.pp
        offset = stage * per
        names = [n for n, _ in self._local_params() if n.startswith("decoder.layers.0.")]
        out = []
        if stage == 0:
            out.append("embedding.word_embeddings.weight")
        for i in range(per):
            out += [n.replace("decoder.layers.0.", f"decoder.layers.{i}.", 1) for n in names]
        if stage == self.pp - 1:
            out.append("decoder.final_layernorm.weight")
            if not self.shape.tied:
                out.append("output_layer.weight")
        return [(n, offset) for n in out]

    def named_parameters_for_export(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full HF tensors, stage after stage: the tp shards gathered, then broadcast from the
        stage that holds them to the other stages (collective over the model-parallel ranks)."""
        local = dict(self._local_params())
        shapes = convert.hf_shapes(self.shape)
        for stage in range(self.pp):
            src = dist.get_process_group_ranks(self.pp_group)[stage] if self.pp > 1 else None
            for name, offset in self._stage_names(stage):
                if stage == self.pp_rank:
                    t = local[name].detach()
                    shards = [t] if self.tp == 1 else [torch.empty_like(t) for _ in range(self.tp)]
                    if self.tp > 1:
                        dist.all_gather(shards, t.contiguous(), group=self.tp_group)
                    items = list(convert.hf_from_shards(name, shards, self.shape, offset))
                else:
                    parts = convert.pieces(name, self.shape, self.tp, 0, offset)
                    hf_names = list(dict.fromkeys(p.hf_name for p in parts))
                    items = [(n, torch.empty(shapes[n], device=self.device)) for n in hf_names]
                for hf_name, full in items:
                    if self.pp > 1:
                        dist.broadcast(full, src=src, group=self.pp_group)
                    yield hf_name, full

    # ------------------------------------------------------------------ checkpoints
    def _chunks(self, tensors: dict[str, torch.Tensor]) -> dict[str, Chunk]:
        """This rank's parameters (or one Adam moment of them) as chunks of the HF tensors;
        every HF tensor is named (rank 0 writes the index), each block owned by exactly one
        rank: dp rank 0, and tp rank 0 for what tp does not cut."""
        out: dict[str, Chunk] = {}
        shapes = convert.hf_shapes(self.shape)
        for stage in range(self.pp):
            for name, offset in self._stage_names(stage):
                parts = convert.pieces(name, self.shape, self.tp, self.tp_rank, offset)
                if stage != self.pp_rank or name not in tensors:
                    for p in parts:
                        shape = shapes[p.hf_name]
                        out.setdefault(p.hf_name, Chunk(None, list(shape), [0] * len(shape)))
                    continue
                owner = self.parallel.dp_rank == 0 and (self.tp_rank == 0 or convert.tp_cut(name))
                for hf_name, (data, shape, off) in convert.local_chunks(
                    name, tensors[name], self.shape, self.tp, self.tp_rank, offset
                ).items():
                    out[hf_name] = Chunk(data, shape, off, owner)
        return out

    def _state(self) -> dict:
        local = {n: t.detach() for n, t in self._local_params()}
        state: dict = {"model": self._chunks(local)}
        if self.optimizer is not None:
            by_param = {id(p): n for n, p in self._local_params()}
            moments: dict[str, dict[str, torch.Tensor]] = {"exp_avg": {}, "exp_avg_sq": {}}
            step = 0.0
            for p in self._params():
                st = self.optimizer.state.get(p)
                for k in moments:
                    moments[k][by_param[id(p)]] = st[k] if st else torch.zeros_like(p)
                if st:
                    step = float(st["step"])
            state["optim"] = {k: self._chunks(v) for k, v in moments.items()}
            state["optim_step"] = step
        return state

    def save_checkpoint(self, path: str) -> None:
        save_state(self._state(), os.path.join(path, SHARDS), dist.get_rank())
        if dist.get_rank() == 0:
            self.write_checkpoint_meta(path)
        dist.barrier()

    def load_checkpoint(self, path: str) -> None:
        """Read back at this rank's layout (any tp / pp / dp the checkpoint was written at)."""
        shapes = convert.hf_shapes(self.shape)
        local = dict(self._local_params())

        def template(names) -> dict[str, torch.Tensor]:
            out = {}
            for name in names:
                for p in convert.pieces(name, self.shape, self.tp, self.tp_rank, self.layer_offset):
                    if p.hf_name not in out:
                        out[p.hf_name] = torch.empty(shapes[p.hf_name])
            return out

        want: dict = {"model": template(local)}
        if self.optimizer is not None:
            want["optim"] = {k: template(local) for k in ("exp_avg", "exp_avg_sq")}
            want["optim_step"] = 0.0
        state = load_state(want, os.path.join(path, SHARDS))

        def fill(name: str, target: torch.Tensor, full: dict[str, torch.Tensor]) -> None:
            parts = convert.pieces(name, self.shape, self.tp, self.tp_rank, self.layer_offset)
            convert.local_from_hf(target, parts, full)

        with torch.no_grad():
            for name, t in local.items():
                fill(name, t.data, state["model"])
        if self.optimizer is not None:
            by_param = {id(p): n for n, p in local.items()}
            step = torch.tensor(float(state["optim_step"]))
            for p in self._params():
                name = by_param[id(p)]
                st = self.optimizer.state[p]
                st["step"] = step.clone()
                for k in ("exp_avg", "exp_avg_sq"):
                    st[k] = torch.zeros_like(p)
                    fill(name, st[k], state["optim"][k])
            self.scheduler.load_state_dict(read_json(os.path.join(path, "scheduler.json")))
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr

    def export_hf(self, path: str) -> None:
        writer = dist.get_rank() == 0
        state = {}
        for name, tensor in self.named_parameters_for_export():
            if writer:
                state[name] = tensor.to(self.dtype if self.on_gpu else torch.float32).cpu()
        if writer:
            write_hf_dir(path, state, self.hf_config, self.model_path)
        dist.barrier()

    @classmethod
    def export_offline(cls, checkpoint: str, out_dir: str) -> None:
        """The checkpoint's chunks are HF tensors already: read them whole and write them."""
        from transformers import AutoConfig

        files = os.path.join(checkpoint, MODEL_FILES)
        config = AutoConfig.from_pretrained(files)
        shapes = convert.hf_shapes(convert.Shape.of(config))
        want = {"model": {n: torch.empty(s) for n, s in shapes.items()}}
        sd = load_state(want, os.path.join(checkpoint, SHARDS))["model"]
        write_hf_dir(out_dir, sd, config, files)
