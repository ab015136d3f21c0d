"""Rollout engines: vLLM (in-process) and HF generate, behind ``base.RolloutEngine``."""
