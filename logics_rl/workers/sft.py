"""The SFT worker: a train engine and the token-mean negative log-likelihood on assistant tokens."""

from __future__ import annotations

import dataclasses
import os

import torch

from logics_rl.config.schema import OptimConfig, TrainEngineConfig
from logics_rl.controller import Dispatch, Worker, register
from logics_rl.protocol import Batch


def nll_loss(total_tokens: int):
    """Sum of -log p over assistant tokens / assistant tokens in the whole step (all ranks)."""

    def loss_fn(mb: Batch, logp_BT: torch.Tensor, entropy_BT):
        mask = mb["loss_mask"].float()
        nll = -(logp_BT * mask).sum()
        return nll / total_tokens, {"sft/loss": float(nll.detach() / mask.sum().clamp(min=1))}

    return loss_fn


class SFTWorker(Worker):
    def __init__(
        self,
        model_path: str,
        engine: TrainEngineConfig,
        optim: OptimConfig,
        total_steps: int,
        seed: int,
    ):
        super().__init__()
        self.model_path = model_path
        self.engine_cfg = dataclasses.replace(engine, optim=optim)
        self.total_steps = total_steps
        self.seed = seed
        self.engine = None

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        from logics_rl.engines.train.fsdp import FSDPEngine

        self.init_distributed()
        self.engine = FSDPEngine(
            self.model_path, self.engine_cfg, total_steps=self.total_steps, seed=self.seed
        )

    @register(dispatch=Dispatch.DP_COMPUTE)
    def train_step(self, batch: Batch, total_tokens: int) -> dict[str, float]:
        if batch.meta.get("dp_pad_rows", 0):
            raise ValueError(
                "train_step got padding rows: the SFT batch must divide by the data-parallel size"
            )
        return self.engine.train_step(batch, nll_loss(total_tokens))

    @register(dispatch=Dispatch.DP_COMPUTE)
    def eval_nll(self, batch: Batch) -> tuple[float, float]:
        """(sum of -log p over assistant tokens, assistant tokens) for this rank's rows."""
        pad = int(batch.meta.get("dp_pad_rows", 0))
        logp = self.engine.compute_log_prob(batch).logp
        mask = batch["loss_mask"].float()
        if pad:
            mask[len(batch) - pad :] = 0  # padding rows are copies: do not count them twice
        return float(-(logp * mask).sum()), float(mask.sum())

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, path: str) -> None:
        from logics_rl.engines.train.fsdp import copy_tokenizer_files

        self.engine.save_checkpoint(path)
        if self.rank == 0:
            hf_dir = os.path.join(path, "hf_config")
            os.makedirs(hf_dir, exist_ok=True)
            self.engine.hf_config.save_pretrained(hf_dir)
            copy_tokenizer_files(self.model_path, hf_dir)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, path: str) -> None:
        self.engine.load_checkpoint(path)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def export_hf(self, path: str) -> None:
        self.engine.export_hf(path)
