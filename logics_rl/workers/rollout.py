"""The rollout role: prompts in, n samples per prompt out, in the rollout batch layout.

The role owns its engine's lifecycle: it wakes the engine to generate, releases its memory while
the trainer uses the device, loads new weights and stamps every sample with the version of the
weights that drew it. ``RolloutWorker`` runs the role alone in a worker group of its own (its own
resource pool, weights arriving through the object store), for evaluation and for rollouts
decoupled from training; the hybrid worker composes the same role with the actor.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from logics_rl.batches import (
    FINISH_REASON,
    POLICY_VERSION,
    PROMPT_IDS,
    PROMPT_MASK,
    RESPONSE,
    RESPONSE_IDS,
    RESPONSE_MASK,
    ROLLOUT_LOGP,
    TEMPERATURE,
    TRUNCATED,
)
from logics_rl.config.schema import RolloutConfig
from logics_rl.controller import Dispatch, Worker, register
from logics_rl.engines.rollout import RolloutEngine, Sampling, build_rollout_engine
from logics_rl.protocol import Batch


def right_pad(rows: list[list], width: int, pad, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    out = torch.full((len(rows), width), pad, dtype=dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        r = r[:width]
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=dtype)
            mask[i, : len(r)] = True
    return out, mask


def pad_id_of(tokenizer) -> int:
    """The tokenizer's padding id (0 when it has none: padded positions are masked anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


class RolloutRole:
    """A rollout engine and the weights version it serves."""

    def __init__(self, engine: RolloutEngine, tokenizer, version: int = 0):
        self.engine = engine
        self.tokenizer = tokenizer
        self.pad_id = pad_id_of(tokenizer)
        self.version = version

    @property
    def dtype(self) -> torch.dtype:
        return self.engine.dtype

    def generate(self, prompts: Batch, sampling: Sampling) -> Batch:
        """``prompts`` has ``prompt_ids``/``prompt_mask`` (left padded) and any other columns.

        Returns ``len(prompts) * n`` rows (each prompt's samples together): the prompt columns
        plus ``response_ids``, ``response_mask``, ``rollout_logp`` [B*n, max_tokens],
        ``truncated`` and ``policy_version`` [B*n], ``response`` (decoded text) and
        ``finish_reason``; meta ``temperature``.
        """
        if len(prompts) == 0:
            raise ValueError("generate got an empty batch")
        self.engine.wake_up()
        ids, mask = prompts[PROMPT_IDS], prompts[PROMPT_MASK]
        rows = [ids[i, mask[i]].tolist() for i in range(len(prompts))]
        gen = self.engine.generate(rows, sampling)
        width = sampling.max_tokens
        resp, resp_mask = right_pad(gen.response_ids, width, self.pad_id, torch.long)
        logp, _ = right_pad(gen.logprobs, width, 0.0, torch.float32)
        columns = {
            RESPONSE_IDS: resp,
            RESPONSE_MASK: resp_mask,
            ROLLOUT_LOGP: logp,
            TRUNCATED: torch.tensor([r == "length" for r in gen.finish_reasons]),
            POLICY_VERSION: torch.full((len(resp),), self.version, dtype=torch.long),
            FINISH_REASON: gen.finish_reasons,
            RESPONSE: self.tokenizer.batch_decode(gen.response_ids, skip_special_tokens=True),
        }
        return prompts.repeat(sampling.n).with_columns(
            columns, meta={TEMPERATURE: sampling.temperature}
        )

    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        self.engine.wake_up()
        return self.engine.prompt_logprobs(sequences)

    def release_memory(self) -> None:
        """Free weights and KV cache while another role uses the device (a no-op on CPU)."""
        self.engine.sleep()

    def load_weights(
        self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int
    ) -> dict[str, float]:
        """New weights (HF names, streamed) that the next samples are stamped with ``version``."""
        self.engine.wake_up()
        stats = self.engine.update_weights(named_tensors)
        self.version = version
        return stats

    def state_dict(self) -> dict:
        return {"engine": self.engine.state_dict(), "version": self.version}

    def load_state_dict(self, state: dict) -> None:
        self.engine.load_state_dict(state["engine"])
        self.version = int(state["version"])


class RolloutWorker(Worker):
    """A rollout role alone in a worker: generation without a train engine beside it."""

    def __init__(self, model_path: str, cfg: RolloutConfig, max_model_len: int, seed: int):
        super().__init__()
        self.model_path, self.cfg = model_path, cfg
        self.max_model_len, self.seed = max_model_len, seed
        self.rollout: RolloutRole | None = None

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        from transformers import AutoTokenizer

        engine = build_rollout_engine(
            self.cfg, self.model_path, max_model_len=self.max_model_len, seed=self.seed + self.rank
        )
        self.rollout = RolloutRole(engine, AutoTokenizer.from_pretrained(self.model_path))

    @register(dispatch=Dispatch.DP_COMPUTE)
    def generate_sequences(self, prompts: Batch, sampling: Sampling) -> Batch:
        return self.rollout.generate(prompts, sampling)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def load_weights(self, named_tensors: list[tuple[str, torch.Tensor]], version: int) -> dict:
        """Weights sent through Ray's object store (one copy per node), e.g. from an actor's
        ``export_weights``; the next samples carry ``version``."""
        return self.rollout.load_weights(named_tensors, version)
