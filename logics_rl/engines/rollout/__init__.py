"""Rollout engines behind ``base.RolloutEngine``: vLLM (in-process) and HF generate.

``build_rollout_engine`` is the one place that names a rollout engine class.
"""

from __future__ import annotations

from logics_rl.config.schema import RolloutConfig
from logics_rl.engines.rollout.base import Generation, RolloutEngine, Sampling


def build_rollout_engine(
    cfg: RolloutConfig, model_path: str, *, max_model_len: int, seed: int
) -> RolloutEngine:
    """The engine ``cfg.engine`` names, serving ``model_path`` for prompt + response lengths up
    to ``max_model_len`` tokens, sampling from a stream seeded with ``seed``."""
    from logics_rl.engines.common import resolve_dtype

    if cfg.engine == "vllm":
        from logics_rl.engines.rollout.vllm import VLLMEngine

        return VLLMEngine(model_path, cfg, max_model_len=max_model_len, seed=seed)
    if cfg.engine == "hf":
        from logics_rl.engines.rollout.hf import HFEngine

        # the HF engine runs on the CPU: "auto" is float32 there
        return HFEngine(model_path, seed=seed, dtype=resolve_dtype(cfg.dtype, gpu=False))
    raise ValueError(f"unknown rollout engine {cfg.engine!r}; use vllm or hf")


__all__ = ["Generation", "RolloutEngine", "Sampling", "build_rollout_engine"]
