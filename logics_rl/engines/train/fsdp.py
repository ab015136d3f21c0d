"""FSDP2 training engine: ``fully_shard`` per decoder layer, gloo on CPU / nccl on GPU.

- fp32 on CPU; bf16 parameters with fp32 gradient reduction on GPU (``MixedPrecisionPolicy``).
- With flash-attn (GPU) each micro-batch is packed into one padding-free row (varlen); with
  sdpa / eager (CPU) samples are right-padded rows with an attention mask, since a packed row
  would need a dense mask quadratic in all the micro-batch's tokens (``packing.py``).
- Micro-batches by token budget, the same number on every rank (FSDP collectives must match).
- The loss of each micro-batch is globally normalised by the caller, so gradients are summed
  across micro-batches and ranks: FSDP averages over ranks, hence the loss is scaled by dp size.
- The LM head runs in token chunks (``logprob.py``) and only where a response token is predicted.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from logics_rl.config.schema import OptimConfig, TrainEngineConfig
from logics_rl.engines.train.base import LogProbs, LossFn, ParallelInfo, TrainEngine
from logics_rl.engines.train.logprob import token_logprobs
from logics_rl.engines.train.packing import Packed, balance, min_micro_batches, pack, sample_lengths
from logics_rl.metrics import merge_weighted
from logics_rl.protocol import Batch

_TRAIN_KEYS = ("prompt_ids", "prompt_mask", "response_ids", "response_mask")


def resolve_dtype(name: str, on_gpu: bool) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if on_gpu else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            name
        ]
    except KeyError:
        raise ValueError(
            f"unknown dtype {name!r}; use auto, float32, bfloat16 or float16"
        ) from None


def resolve_attn(name: str, on_gpu: bool) -> str:
    if name != "auto":
        return name
    if on_gpu:
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            return "sdpa"
    return "sdpa"


class _PackedLM(nn.Module):
    """Root FSDP unit: decoder forward on a packed row, then chunked log-probs of the targets."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Packed row: no attention mask and no cache, so transformers derives the sample
        # boundaries from the restarting position ids (flash-attn varlen). With a cache it
        # would silently attend across samples. Padded rows: the mask marks the valid tokens.
        out = self.lm.model(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
            use_cache=False,
        )
        hidden = out.last_hidden_state.flatten(0, 1)[predict_pos]
        return token_logprobs(
            hidden,
            self.lm.get_output_embeddings().weight,
            targets,
            temperature=temperature,
            with_entropy=with_entropy,
            chunk=chunk,
        )


def lr_lambda(cfg: OptimConfig, total_steps: int):
    """Linear warm-up, then constant or cosine down to ``min_lr_ratio``."""

    def fn(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "cosine":
            span = max(1, total_steps - cfg.warmup_steps)
            progress = min(1.0, (step - cfg.warmup_steps) / span)
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        raise ValueError(f"unknown lr schedule {cfg.schedule!r}; use constant or cosine")

    return fn


class FSDPEngine(TrainEngine):
    """A HF causal LM sharded with FSDP2 over the default process group."""

    def __init__(
        self,
        model_path: str,
        cfg: TrainEngineConfig,
        *,
        trainable: bool = True,
        total_steps: int = 1,
        seed: int = 0,
    ):
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        from transformers import AutoConfig, AutoModelForCausalLM

        if not dist.is_initialized():
            raise RuntimeError(
                "FSDPEngine needs torch.distributed initialised (Worker.init_distributed)"
            )
        self.cfg = cfg
        self.model_path = model_path
        self.trainable = trainable
        self.on_gpu = torch.cuda.is_available()
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if self.on_gpu
            else torch.device("cpu")
        )
        self.dtype = resolve_dtype(cfg.dtype, self.on_gpu)
        self.parallel = ParallelInfo(dp_rank=dist.get_rank(), dp_size=dist.get_world_size())
        torch.manual_seed(seed)

        self.hf_config = AutoConfig.from_pretrained(model_path)
        lm = AutoModelForCausalLM.from_pretrained(
            model_path,
            dtype=torch.float32,  # master weights in fp32; compute dtype via mixed precision
            attn_implementation=resolve_attn(cfg.attn_implementation, self.on_gpu),
        )
        varlen = (lm.config._attn_implementation or "").startswith("flash_attention")
        self.layout = "packed" if varlen else "padded"
        if cfg.activation_checkpointing and trainable:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not trainable:
            lm.requires_grad_(False)
        lm.to(self.device)
        mp = None
        if self.dtype != torch.float32:
            mp = MixedPrecisionPolicy(param_dtype=self.dtype, reduce_dtype=torch.float32)
        kw = {"mp_policy": mp} if mp is not None else {}
        for layer in lm.model.layers:
            fully_shard(layer, **kw)
        self.module = _PackedLM(lm)
        # The root keeps its (small) parameters unsharded from forward to backward: the chunked
        # LM head recomputes logits from the embedding weight in the backward pass.
        fully_shard(self.module, reshard_after_forward=False, **kw)

        self.optimizer = None
        self.scheduler = None
        if trainable:
            o = cfg.optim
            self.optimizer = torch.optim.AdamW(
                [p for p in self.module.parameters() if p.requires_grad],
                lr=o.lr,
                betas=tuple(o.betas),
                eps=o.eps,
                weight_decay=o.weight_decay,
            )
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lr_lambda(o, total_steps)
            )

    @property
    def lm(self) -> nn.Module:
        return self.module.lm

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else 0.0

    # ------------------------------------------------------------------ micro-batches
    def _micro_batches(self, batch: Batch) -> list[list[int]]:
        """Row indices per micro-batch; the count is agreed across ranks (max of the minimums)."""
        lengths = sample_lengths(batch["prompt_mask"], batch["response_mask"]) if len(batch) else []
        local = min_micro_batches(lengths, self.cfg.max_tokens_per_micro_batch) if lengths else 1
        count = torch.tensor([local], dtype=torch.long, device=self.device)
        if self.parallel.dp_size > 1:
            dist.all_reduce(count, op=dist.ReduceOp.MAX)
        return balance(lengths, int(count.item()))

    def _forward(self, packed: Packed, temperature: float, with_entropy: bool):
        return self.module(
            packed.input_ids.to(self.device),
            packed.position_ids.to(self.device),
            None if packed.attention_mask is None else packed.attention_mask.to(self.device),
            packed.predict_pos.to(self.device),
            packed.targets.to(self.device),
            temperature,
            with_entropy,
            self.cfg.logprob_chunk_size,
        )

    def _dummy(self, batch: Batch) -> Batch:
        """A one-row stand-in for an empty micro-batch (its loss is multiplied by zero)."""
        row = batch[:1] if len(batch) else None
        if row is None:
            raise ValueError("a rank received no rows at all; the batch must cover every dp rank")
        return row

    # ------------------------------------------------------------------ protocol
    @torch.no_grad()
    def compute_log_prob(
        self, batch: Batch, *, temperature: float = 1.0, with_entropy: bool = False
    ) -> LogProbs:
        self.module.eval()
        B, R = batch["response_ids"].shape
        logp = torch.zeros(B, R, dtype=torch.float32)
        ent = torch.zeros(B, R, dtype=torch.float32) if with_entropy else None
        for rows in self._micro_batches(batch):
            mb = batch[rows] if rows else self._dummy(batch)
            packed = pack(*(mb[k] for k in _TRAIN_KEYS), layout=self.layout)
            lp, e = self._forward(packed, temperature, with_entropy)
            if not rows:
                continue
            logp[rows] = packed.scatter(lp.float().cpu())
            if with_entropy:
                ent[rows] = packed.scatter(e.float().cpu())
        return LogProbs(logp, ent)

    def forward_backward(
        self, batch: Batch, loss_fn: LossFn, *, needs_entropy: bool = False
    ) -> dict[str, float]:
        """Accumulate gradients of ``loss_fn`` over token-budget micro-batches (no optimizer step)."""
        if self.optimizer is None:
            raise RuntimeError("this engine was built without an optimizer (trainable=False)")
        self.module.train()
        temperature = float(batch.meta.get("temperature", 1.0))
        micro = self._micro_batches(batch)
        parts: list[tuple[dict[str, float], float]] = []
        tokens, loss_tokens = 0, 0.0
        for i, rows in enumerate(micro):
            mb = batch[rows] if rows else self._dummy(batch)
            packed = pack(*(mb[k] for k in _TRAIN_KEYS), layout=self.layout)
            self.module.set_requires_gradient_sync(i == len(micro) - 1)
            lp, e = self._forward(packed, temperature, needs_entropy)
            logp_BT = packed.scatter(lp)
            ent_BT = packed.scatter(e) if needs_entropy else None
            loss, metrics = loss_fn(mb.to(self.device), logp_BT, ent_BT)
            if not rows:
                loss = loss * 0.0
            # FSDP averages gradients over ranks; the loss is already globally normalised.
            (loss * self.parallel.dp_size).backward()
            if rows:
                weight = float(
                    (mb["loss_mask"] if "loss_mask" in mb else mb["response_mask"]).sum()
                )
                parts.append((metrics, weight))
                tokens += packed.num_tokens
                loss_tokens += weight
        out = merge_weighted(parts)
        out.update(tokens=float(tokens), loss_tokens=loss_tokens, micro_batches=float(len(micro)))
        return out

    def optimizer_step(self) -> dict[str, float]:
        """Clip, step (skipped on a non-finite gradient norm), zero grads, advance the schedule."""
        lr = self.lr
        params = [p for p in self.module.parameters() if p.grad is not None]
        clip = self.cfg.optim.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=clip if clip > 0 else float("inf"))
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        grad_norm = float(norm)
        finite = math.isfinite(grad_norm)
        if finite:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return {"grad_norm": grad_norm, "lr": lr, "skipped_steps": 0.0 if finite else 1.0}

    def named_parameters_for_export(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in self.lm.state_dict().items():
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            yield name, full.detach()

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_sd, optim_sd = get_state_dict(self.module, self.optimizer or [])
        state = {"model": model_sd}
        if self.optimizer is not None:
            state["optim"] = optim_sd
        dcp.save(state, checkpoint_id=os.path.join(path, "dcp"))
        if self.parallel.dp_rank == 0 and self.scheduler is not None:
            torch.save(
                {"scheduler": self.scheduler.state_dict()}, os.path.join(path, "scheduler.pt")
            )
        dist.barrier()

    def load_checkpoint(self, path: str) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_sd, optim_sd = get_state_dict(self.module, self.optimizer or [])
        state = {"model": model_sd}
        if self.optimizer is not None:
            state["optim"] = optim_sd
        dcp.load(state, checkpoint_id=os.path.join(path, "dcp"))
        set_state_dict(
            self.module,
            self.optimizer or [],
            model_state_dict=state["model"],
            optim_state_dict=state.get("optim", {}),
        )
        if self.scheduler is not None:
            sched = torch.load(os.path.join(path, "scheduler.pt"), weights_only=False)
            self.scheduler.load_state_dict(sched["scheduler"])

    def export_hf(self, path: str) -> None:
        from safetensors.torch import save_file

        tied = bool(getattr(self.hf_config, "tie_word_embeddings", False))
        state = {}
        for name, tensor in self.named_parameters_for_export():
            if self.parallel.dp_rank == 0 and not (tied and name == "lm_head.weight"):
                state[name] = (
                    tensor.to(self.dtype if self.on_gpu else torch.float32).contiguous().cpu()
                )
        if self.parallel.dp_rank == 0:
            os.makedirs(path, exist_ok=True)
            save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
            self.hf_config.save_pretrained(path)
            copy_tokenizer_files(self.model_path, path)
        dist.barrier()


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "generation_config.json",
)


def copy_tokenizer_files(src: str, dst: str) -> None:
    """Copy the tokenizer (and generation config) next to exported weights."""
    for name in TOKENIZER_FILES:
        f = os.path.join(src, name)
        if os.path.exists(f):
            shutil.copy(f, os.path.join(dst, name))
