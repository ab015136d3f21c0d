"""The SFT worker: a train engine and the token-mean negative log-likelihood on assistant tokens."""

from __future__ import annotations

import dataclasses

import torch

from logics_rl.batches import LOSS_MASK
from logics_rl.config.schema import OptimConfig, TrainEngineConfig
from logics_rl.controller import Dispatch, Worker, register
from logics_rl.engines.train import build_train_engine
from logics_rl.protocol import Batch

NLL, TOKENS = "nll", "tokens"  # eval_nll's columns


def nll_loss(total_tokens: int):
    """Sum of -log p over assistant tokens / assistant tokens in the whole step (all ranks)."""

    def loss_fn(mb: Batch, logp_BT: torch.Tensor, entropy_BT):
        mask = mb[LOSS_MASK].float()
        nll = -(logp_BT * mask).sum()
        return nll / total_tokens, {"sft/loss": float(nll.detach() / mask.sum().clamp(min=1))}

    return loss_fn


class SFTWorker(Worker):
    """A train engine under the SFT loss (stage one)."""

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
        self.init_distributed()
        self.engine = build_train_engine(
            self.engine_cfg, self.model_path, total_steps=self.total_steps, seed=self.seed
        )
        self.parallel = self.engine.parallel

    @register(dispatch=Dispatch.DP_COMPUTE, pad=False)
    def train_step(self, batch: Batch, total_tokens: int) -> dict[str, float]:
        return self.engine.train_step(batch, nll_loss(total_tokens), temperature=1.0)

    @register(dispatch=Dispatch.DP_COMPUTE)
    def eval_nll(self, batch: Batch) -> Batch:
        """Per row: ``nll`` (sum of -log p over assistant tokens) and ``tokens`` (their count)."""
        logp = self.engine.compute_log_prob(batch, temperature=1.0).logp
        mask = batch[LOSS_MASK].float()
        return Batch.from_dict({NLL: -(logp * mask).sum(1), TOKENS: mask.sum(1)})

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, path: str) -> None:
        self.engine.save_checkpoint(path)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, path: str) -> None:
        self.engine.load_checkpoint(path)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def export_hf(self, path: str) -> None:
        self.engine.export_hf(path)
