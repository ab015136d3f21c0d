"""FSDP2 training engine: ``fully_shard`` per decoder layer, gloo on CPU / nccl on GPU.

- GPU: bf16 parameters with fp32 gradient reduction (``MixedPrecisionPolicy``). CPU: fp32, or
  ``dtype: bfloat16`` as autocast over fp32 master weights; one CPU rank runs unwrapped.
- With flash-attn (GPU) each micro-batch is packed into one padding-free row (varlen); with
  sdpa / eager (CPU) samples are right-padded rows with an attention mask, since a packed row
  would need a dense mask quadratic in all the micro-batch's tokens (``packing.py``), and the
  samples of a prompt run it once (``share_prompts``: a prompt pass, then a response pass on
  its KV cache).
- Micro-batches by token budget, the same number on every rank (FSDP collectives must match).
- The loss of each micro-batch is globally normalised by the caller, so gradients are summed
  across micro-batches and ranks: FSDP averages over ranks, hence the loss is scaled by dp size.
- The LM head runs in token chunks (``logprob.py``) and only where a response token is predicted.
- Checkpoints: model + optimizer state as per-rank safetensors shards with a JSON index
  (``shards.py``: data only, readable at any world size), ``scheduler.json``, ``engine.json``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from logics_rl.checkpoint import read_json
from logics_rl.config.schema import TrainEngineConfig
from logics_rl.engines.common import resolve_attn
from logics_rl.engines.train.base import (
    MODEL_FILES,
    LogProbs,
    LossFn,
    MicroBatchLosses,
    ParallelInfo,
    TrainEngine,
)
from logics_rl.engines.train.logprob import token_logprobs
from logics_rl.engines.train.optim import build_optimizer
from logics_rl.engines.train.packing import (
    Packed,
    balance,
    length_buckets,
    min_micro_batches,
    pack,
    padded_cost,
    prompt_groups,
    sample_lengths,
    shared_cost,
    shared_prompt_buckets,
)
from logics_rl.engines.train.shards import SHARDS, load_state, save_state
from logics_rl.models.hf import write_hf_dir
from logics_rl.protocol import Batch

_TRAIN_KEYS = ("prompt_ids", "prompt_mask", "response_ids", "response_mask")
# The shared layout (two passes per micro-batch) is used when its plan costs at least this
# fraction fewer padded tokens than the padded layout's.
SHARE_MIN_SAVING = 0.1


class _PackedLM(nn.Module):
    """Root FSDP unit: decoder forward on a packed row, then chunked log-probs of the targets.

    ``autocast``: the decoder's compute dtype on CPU (bfloat16 matmuls over float32 weights,
    norms and residuals in float32); the LM head's logits and the log-probs stay float32 either
    way, its two gradient GEMMs take the autocast dtype (``logprob.token_logprobs``).
    With the ``prompt_*`` tensors (shared layout) the decoder first runs the distinct prompts,
    then the responses on the prompts' KV cache indexed per sample (``prompt_of_row``).
    """

    def __init__(self, lm: nn.Module, autocast: torch.dtype | None = None):
        super().__init__()
        self.lm = lm
        self.autocast = autocast

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        predict_pos: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,
        with_entropy: bool,
        chunk: int,
        keep_bytes: int = 0,
        prompt_ids: torch.Tensor | None = None,
        prompt_position_ids: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        prompt_of_row: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Packed row: no attention mask and no cache, so transformers derives the sample
        # boundaries from the restarting position ids (flash-attn varlen). With a cache it
        # would silently attend across samples. Padded rows: the mask marks the valid tokens.
        with torch.autocast("cpu", dtype=self.autocast, enabled=self.autocast is not None):
            cache, hidden, embeds = None, [], None
            if prompt_ids is not None:
                from transformers import DynamicCache

                # one embedding lookup for both passes: its backward is a dense vocab-sized
                # gradient, worth computing once
                n = prompt_ids.numel()
                flat = self.lm.get_input_embeddings()(
                    torch.cat([prompt_ids.flatten(), input_ids.flatten()])
                )
                embeds = flat[n:].view(*input_ids.shape, -1)
                cache = DynamicCache(config=self.lm.config)
                out = self.lm.model(
                    inputs_embeds=flat[:n].view(*prompt_ids.shape, -1),
                    position_ids=prompt_position_ids,
                    attention_mask=prompt_attention_mask,
                    past_key_values=cache,
                    use_cache=True,
                )
                if cache.get_seq_length() != prompt_ids.shape[1]:
                    raise RuntimeError(
                        "the prompt pass filled no KV cache (activation checkpointing drops "
                        "it); set actor.share_prompts=false"
                    )
                cache.batch_select_indices(prompt_of_row)
                hidden.append(out.last_hidden_state.flatten(0, 1))
            out = self.lm.model(
                input_ids=None if embeds is not None else input_ids,
                inputs_embeds=embeds,
                position_ids=position_ids,
                attention_mask=attention_mask,
                past_key_values=cache,
                use_cache=cache is not None,
            )
        hidden.append(out.last_hidden_state.flatten(0, 1))
        hidden = (hidden[0] if len(hidden) == 1 else torch.cat(hidden))[predict_pos]
        return token_logprobs(
            hidden,
            self.lm.get_output_embeddings().weight,
            targets,
            temperature=temperature,
            with_entropy=with_entropy,
            chunk=chunk,
            keep_bytes=keep_bytes,
            grad_dtype=self.autocast,
        )


class FSDPEngine(TrainEngine):
    """A HF causal LM sharded with FSDP2 over the default process group."""

    kind = "fsdp"

    def __init__(
        self,
        model_path: str,
        cfg: TrainEngineConfig,
        *,
        trainable: bool = True,
        total_steps: int = 1,
        seed: int = 0,
    ):
        self._setup(model_path, cfg, trainable)
        self.parallel = ParallelInfo(dp_rank=dist.get_rank(), dp_size=dist.get_world_size())
        torch.manual_seed(seed)
        self.module = self._shard(self._load_model())
        self.optimizer = self.scheduler = None
        if trainable:
            params = [p for p in self.module.parameters() if p.requires_grad]
            # the fused kernel takes plain tensors; FSDP's sharded DTensors keep the default
            fused = not any(hasattr(p, "to_local") for p in params)
            self.optimizer, self.scheduler = build_optimizer(
                cfg.optim, params, total_steps, fused=fused
            )

    def _load_model(self) -> nn.Module:
        from transformers import AutoConfig, AutoModelForCausalLM

        self.hf_config = AutoConfig.from_pretrained(self.model_path)
        lm = AutoModelForCausalLM.from_pretrained(
            self.model_path,
            dtype=torch.float32,  # master weights in fp32; compute dtype via mixed precision
            attn_implementation=resolve_attn(self.cfg.attn_implementation, self.on_gpu),
        )
        varlen = (lm.config._attn_implementation or "").startswith("flash_attention")
        self.layout = "packed" if varlen else "padded"
        checkpointing = self.cfg.activation_checkpointing and self.trainable
        if self.layout == "padded" and self.cfg.share_prompts and not checkpointing:
            self.layout = "shared"
        if checkpointing:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not self.trainable:
            lm.requires_grad_(False)
        return lm.to(self.device)

    def _shard(self, lm: nn.Module) -> nn.Module:
        """``fully_shard`` per decoder layer, then the root around the chunked LM head.

        GPU: a lower compute dtype is FSDP2's mixed precision (bf16 parameters, fp32 gradient
        reduction). CPU: it is autocast (fp32 master weights, norms and residuals), and one CPU
        rank runs the plain module: there is nothing to shard, and FSDP2's per-layer parameter
        copies cost about a tenth of a step (state-dict names and checkpoints are the same).
        """
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        low = self.dtype if self.dtype != torch.float32 else None
        kw = {}
        if self.on_gpu and low is not None:
            kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=low, reduce_dtype=torch.float32)
        module = _PackedLM(lm, autocast=None if self.on_gpu else low)
        if not self.on_gpu and self.parallel.dp_size == 1:
            return module
        for layer in lm.model.layers:
            fully_shard(layer, **kw)
        # The root keeps its (small) parameters unsharded from forward to backward: the chunked
        # LM head recomputes logits from the embedding weight in the backward pass.
        fully_shard(module, reshard_after_forward=False, **kw)
        return module

    def all_reduce_dp(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.parallel.dp_size > 1:
            dist.all_reduce(tensor)
        return tensor

    @property
    def lm(self) -> nn.Module:
        return self.module.lm

    # ------------------------------------------------------------------ micro-batches
    def _micro_batches(self, batch: Batch) -> tuple[str, list[list[int]]]:
        """The batch's layout and row indices per micro-batch; every rank agrees on both (the
        count is the max of the minimums; FSDP's collectives need the same passes everywhere).

        Packed layout: token-balanced bins of valid tokens. Padded layout (CPU): rows of similar
        length together, the budget counting padded tokens (``packing.length_buckets``). Shared
        layout: the same over prompt groups (``packing.shared_prompt_buckets``), when its plan
        costs at least ``SHARE_MIN_SAVING`` fewer padded tokens (two passes per micro-batch
        counted) than the padded one over all ranks; else padded (an SFT batch, whose "prompt"
        is one token, or short prompts next to responses of very different lengths)."""
        lengths = sample_lengths(batch["prompt_mask"], batch["response_mask"]) if len(batch) else []
        budget = self.cfg.max_tokens_per_micro_batch
        layout, cut, runs = self.layout, None, None
        if lengths and layout in ("padded", "shared"):
            cut = functools.partial(length_buckets, lengths, budget)
            runs = cut()
        if layout == "shared":
            p_len = batch["prompt_mask"].sum(1).tolist() if lengths else []
            r_len = batch["response_mask"].sum(1).tolist() if lengths else []
            masks = batch["prompt_mask"].bool() if lengths else []
            groups = prompt_groups([ids[m] for ids, m in zip(batch["prompt_ids"], masks)])
            shared = functools.partial(shared_prompt_buckets, p_len, r_len, groups, budget)
            shared_runs = shared() if lengths else None
            costs = torch.zeros(2, dtype=torch.long)
            if lengths:
                costs[0] = padded_cost(runs, lengths)
                costs[1] = shared_cost(shared_runs, p_len, r_len, groups)
            costs = costs.to(self.device)
            if self.parallel.dp_size > 1:
                dist.all_reduce(costs)
            padded, share = costs.tolist()
            pays = padded > 0 and share <= (1 - SHARE_MIN_SAVING) * padded
            layout = "shared" if pays else "padded"
            if pays and lengths:
                cut, runs = shared, shared_runs
        if runs is not None:
            local = len(runs)
        else:
            local = min_micro_batches(lengths, budget) if lengths else 1
        count = torch.tensor([local], dtype=torch.long, device=self.device)
        if self.parallel.dp_size > 1:
            dist.all_reduce(count, op=dist.ReduceOp.MAX)
        k = int(count.item())
        if runs is not None:
            # the local cut already has k runs unless another rank needs more
            return layout, runs if k == len(runs) else cut(k)
        return layout, balance(lengths, k)

    def _forward(self, packed: Packed, temperature: float, with_entropy: bool):
        def dev(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(self.device)

        p = packed.prompts
        prompts = () if p is None else (p.input_ids, p.position_ids, p.attention_mask, p.of_row)
        return self.module(
            dev(packed.input_ids),
            dev(packed.position_ids),
            dev(packed.attention_mask),
            dev(packed.predict_pos),
            dev(packed.targets),
            temperature,
            with_entropy,
            self.cfg.logprob_chunk_size,
            self.cfg.logprob_keep_logits_mb << 20,
            *map(dev, prompts),
        )

    def _dummy(self, batch: Batch) -> Batch:
        """A one-row stand-in for an empty micro-batch (its loss is multiplied by zero): every
        rank must run the same number of forward passes for FSDP's collectives to match."""
        if not len(batch):
            raise ValueError("a rank received no rows at all; the batch must cover every dp rank")
        return batch[:1]

    # ------------------------------------------------------------------ protocol
    @torch.no_grad()
    def compute_log_prob(
        self, batch: Batch, *, temperature: float, with_entropy: bool = False
    ) -> LogProbs:
        self.module.eval()
        B, R = batch["response_ids"].shape
        logp = torch.zeros(B, R, dtype=torch.float32)
        ent = torch.zeros(B, R, dtype=torch.float32) if with_entropy else None
        layout, micro = self._micro_batches(batch)
        for rows in micro:
            mb = batch[rows] if rows else self._dummy(batch)
            packed = pack(*(mb[k] for k in _TRAIN_KEYS), layout=layout)
            lp, e = self._forward(packed, temperature, with_entropy)
            if not rows:
                continue
            logp[rows] = packed.scatter(lp.float().cpu())
            if with_entropy:
                ent[rows] = packed.scatter(e.float().cpu())
        return LogProbs(logp, ent)

    def forward_backward(
        self, batch: Batch, loss_fn: LossFn, *, temperature: float, needs_entropy: bool = False
    ) -> dict[str, float]:
        """Accumulate gradients of ``loss_fn`` over token-budget micro-batches (no optimizer step)."""
        if self.optimizer is None:
            raise RuntimeError("this engine was built without an optimizer (trainable=False)")
        self.module.train()
        layout, micro = self._micro_batches(batch)
        losses = MicroBatchLosses(loss_fn, self.device, needs_entropy)
        for i, rows in enumerate(micro):
            mb = batch[rows] if rows else self._dummy(batch)
            packed = pack(*(mb[k] for k in _TRAIN_KEYS), layout=layout)
            if hasattr(self.module, "set_requires_gradient_sync"):  # FSDP: sync on the last one
                self.module.set_requires_gradient_sync(i == len(micro) - 1)
            lp, e = self._forward(packed, temperature, needs_entropy)
            loss = losses.loss(mb, packed, rows, lp, e)
            # FSDP averages gradients over ranks; the loss is already globally normalised.
            (loss * self.parallel.dp_size).backward()
        return losses.result(len(micro))

    def optimizer_step(self) -> dict[str, float]:
        """Clip, step (skipped on a non-finite gradient norm), zero grads, advance the schedule."""
        lr = self.lr
        params = [p for p in self.module.parameters() if p.grad is not None]
        clip = self.cfg.optim.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=clip if clip > 0 else float("inf"))
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        return self._step_if_finite(float(norm), lr)

    def named_parameters_for_export(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in self.lm.state_dict().items():
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            yield name, full.detach()

    # ------------------------------------------------------------------ checkpoints
    def _train_state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_sd, optim_sd = get_state_dict(self.module, self.optimizer or [])
        return {"model": model_sd, **({"optim": optim_sd} if self.optimizer else {})}

    def save_checkpoint(self, path: str) -> None:
        save_state(self._train_state(), os.path.join(path, SHARDS), dist.get_rank())
        if self.parallel.dp_rank == 0:
            self.write_checkpoint_meta(path)
        dist.barrier()

    def load_checkpoint(self, path: str) -> None:
        from torch.distributed.checkpoint.state_dict import set_state_dict

        state = load_state(self._train_state(), os.path.join(path, SHARDS))
        set_state_dict(
            self.module,
            self.optimizer or [],
            model_state_dict=state["model"],
            optim_state_dict=state.get("optim", {}),
        )
        if self.scheduler is not None:
            self.scheduler.load_state_dict(read_json(os.path.join(path, "scheduler.json")))

    def export_hf(self, path: str) -> None:
        tied = bool(getattr(self.hf_config, "tie_word_embeddings", False))
        state = {}
        for name, tensor in self.named_parameters_for_export():
            if self.parallel.dp_rank == 0 and not (tied and name == "lm_head.weight"):
                state[name] = (
                    tensor.to(self.dtype if self.on_gpu else torch.float32).contiguous().cpu()
                )
        if self.parallel.dp_rank == 0:
            write_hf_dir(path, state, self.hf_config, self.model_path)
        dist.barrier()

    @classmethod
    def export_offline(cls, checkpoint: str, out_dir: str) -> None:
        """Rebuild the module's state-dict keys on one process and read the shards into it."""
        from transformers import AutoConfig, AutoModelForCausalLM

        files = os.path.join(checkpoint, MODEL_FILES)
        config = AutoConfig.from_pretrained(files)
        wrapper = _PackedLM(AutoModelForCausalLM.from_config(config, dtype=torch.float32))
        state = load_state({"model": wrapper.state_dict()}, os.path.join(checkpoint, SHARDS))
        wrapper.load_state_dict(state["model"])
        sd = {k: v.contiguous() for k, v in wrapper.lm.state_dict().items()}
        if getattr(config, "tie_word_embeddings", False):
            sd.pop("lm_head.weight", None)
        write_hf_dir(out_dir, sd, config, files)
