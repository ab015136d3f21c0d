"""Load a recipe YAML plus ``key=value`` overrides into the typed ``Config``.

Errors name the key: an unknown or misspelt key suggests the nearest valid one; a value of the
wrong type names the key, the value and the expected type.

    cfg = load_config("recipes/dapo_qwen3_8b.yaml", ["trainer.seed=3", "rollout.n=16"])
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from logics_rl.config.schema import Config
from logics_rl.registry import nearest

QUICKSTART = os.path.join(os.path.dirname(__file__), "..", "recipes", "quickstart.yaml")


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema."""


def _dataclass_at(path: list[str]) -> type | None:
    """The schema dataclass reached by following ``path`` from ``Config``."""
    cls: Any = Config
    for part in path:
        if not dataclasses.is_dataclass(cls):
            return None
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return None
        t = hints[part]
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if (typing.get_origin(t) is list and args) or (args and dataclasses.is_dataclass(args[0])):
            t = args[0]
        cls = t
    return cls if dataclasses.is_dataclass(cls) else None


def _unknown_key_message(full_key: str) -> str:
    parts = [
        p for p in full_key.replace("[", ".").replace("]", "").split(".") if p and not p.isdigit()
    ]
    parent, key = parts[:-1], parts[-1] if parts else full_key
    cls = _dataclass_at(parent)
    valid = [f.name for f in dataclasses.fields(cls)] if cls else []
    where = ".".join(parent) or "the top level"
    msg = f"unknown config key '{full_key}'"
    hint = nearest(key, valid)
    if hint:
        msg += f"; did you mean '{'.'.join([*parent, hint])}'?"
    if valid:
        msg += f" Valid keys under {where}: {', '.join(valid)}"
    return msg


def _translate(exc: OmegaConfBaseException, source: str) -> ConfigError:
    full_key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    if isinstance(exc, ConfigKeyError | ConfigAttributeError) and "not in" in str(exc):
        return ConfigError(f"{source}: {_unknown_key_message(str(full_key))}")
    if isinstance(exc, ValidationError):
        first = str(exc).splitlines()[0]
        return ConfigError(f"{source}: wrong value for '{full_key}': {first}")
    return ConfigError(f"{source}: {str(exc).splitlines()[0]} (key '{full_key}')")


def _merge(base: Any, other: Any, source: str) -> Any:
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as exc:
        raise _translate(exc, source) from None


def load_config(path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Schema defaults <- recipe YAML <- overrides, validated and returned as a ``Config``."""
    cfg = OmegaConf.structured(Config)
    if path:
        if not os.path.exists(path):
            raise ConfigError(f"recipe {path!r} does not exist")
        try:
            recipe = OmegaConf.load(path)
        except Exception as exc:  # yaml errors name the line
            raise ConfigError(f"{path}: cannot parse YAML: {exc}") from None
        cfg = _merge(cfg, recipe, path)
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {bad}")
        try:
            dot = OmegaConf.from_dotlist(list(overrides))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"overrides: {exc}") from None
        cfg = _merge(cfg, dot, "overrides")
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise _translate(exc, path or "config") from None
    validate(obj)
    return obj


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg: Config) -> None:
    """Checks that need more than types: enumerations, ranges, divisibility."""
    _check(cfg.mode in ("rl", "sft", "sft_rl"), f"mode must be rl, sft or sft_rl, got {cfg.mode!r}")
    _check(cfg.rollout.n >= 1, f"rollout.n must be >= 1, got {cfg.rollout.n}")
    _check(
        cfg.rollout.engine.engine in ("vllm", "hf"),
        f"rollout.engine.engine must be vllm or hf, got {cfg.rollout.engine.engine!r}",
    )
    _check(cfg.actor.backend == "fsdp", f"actor.backend must be fsdp, got {cfg.actor.backend!r}")
    _check(cfg.trainer.prompts_per_step >= 1, "trainer.prompts_per_step must be >= 1")
    _check(
        cfg.trainer.dynamic_sampling.on_cap in ("train", "stop"),
        f"trainer.dynamic_sampling.on_cap must be train or stop, got {cfg.trainer.dynamic_sampling.on_cap!r}",
    )
    _check(
        cfg.trainer.resume in ("auto", "never") or os.path.isdir(cfg.trainer.resume),
        f"trainer.resume must be auto, never or an existing checkpoint directory, got {cfg.trainer.resume!r}",
    )
    agg = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
    mode = cfg.algorithm.policy_loss.loss_agg_mode
    _check(mode in agg, f"algorithm.policy_loss.loss_agg_mode must be one of {agg}, got {mode!r}")
    _check(
        cfg.algorithm.kl.estimator in ("k1", "k2", "k3"),
        f"algorithm.kl.estimator must be k1, k2 or k3, got {cfg.algorithm.kl.estimator!r}",
    )
    alg, eng = cfg.algorithm, cfg.rollout.engine
    _check(
        alg.old_log_prob in ("recompute", "rollout"),
        f"algorithm.old_log_prob must be recompute or rollout, got {alg.old_log_prob!r}",
    )
    if alg.old_log_prob == "rollout":
        _check(
            eng.top_p == 1.0 and eng.top_k in (-1, 0),
            "algorithm.old_log_prob=rollout needs full-softmax sampling (rollout.engine.top_p 1, "
            f"top_k -1), got top_p {eng.top_p}, top_k {eng.top_k}: the rollout log-probs are "
            "renormalised over the kept tokens",
        )
        _check(
            alg.policy_loss.tis_cap is None,
            "algorithm.policy_loss.tis_cap corrects train / rollout mismatch, which "
            "algorithm.old_log_prob=rollout does not measure; use recompute or drop tis_cap",
        )
    for name in cfg.trainer.loggers:
        _check(
            name in ("console", "jsonl", "tensorboard", "wandb"),
            f"trainer.loggers: unknown logger {name!r}",
        )
    world = cfg.cluster.nnodes * cfg.cluster.procs_per_node
    batch = cfg.trainer.prompts_per_step * cfg.rollout.n
    _check(
        batch % (world * cfg.trainer.mini_batches_per_step) == 0,
        f"the train batch (trainer.prompts_per_step x rollout.n = {batch}) must divide into "
        f"{cfg.trainer.mini_batches_per_step} mini-batches on each of {world} data-parallel ranks",
    )
    _check(
        cfg.trainer.prompts_per_step % world == 0,
        f"trainer.prompts_per_step ({cfg.trainer.prompts_per_step}) must be a multiple of the "
        f"number of ranks ({world})",
    )
    if cfg.mode in ("rl", "sft_rl"):
        _check(
            bool(cfg.data.train_files) or cfg.data.synthetic.task is not None,
            "data.train_files is empty and no data.synthetic.task is set",
        )
    if cfg.mode in ("sft", "sft_rl"):
        _check(
            bool(cfg.sft.train_files) or cfg.data.synthetic.task is not None,
            "sft.train_files is empty and no data.synthetic.task is set",
        )


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
