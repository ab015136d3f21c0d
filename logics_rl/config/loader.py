"""Load a recipe YAML plus ``key=value`` overrides into the typed ``Config``.

Errors name the key: an unknown or misspelt key suggests the nearest valid one; a value of the
wrong type names the key, the value and the expected type.

    cfg = load_config("recipes/dapo_qwen3_8b.yaml", ["trainer.seed=3", "rollout.n=16"])
"""

from __future__ import annotations

import dataclasses
import os
import typing
from enum import Enum
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from logics_rl.config.schema import BehaviourLogProb, Choice, Config, Mode, data_parallel_size
from logics_rl.errors import LogicsRLError
from logics_rl.registry import nearest


class ConfigError(LogicsRLError, ValueError):
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


def _key_path(full_key: str) -> list[str]:
    """``a.b[1].c`` -> ``[a, b, c]``: the schema fields along a key (list indices dropped)."""
    return [
        p for p in full_key.replace("[", ".").replace("]", "").split(".") if p and not p.isdigit()
    ]


def _unknown_key_message(full_key: str) -> str:
    parts = _key_path(full_key)
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


def _choices_message(full_key: str, value: Any) -> str | None:
    """For a ``Choice`` field: the valid values (not OmegaConf's member names) and a hint."""
    parts = _key_path(full_key)
    cls = _dataclass_at(parts[:-1])
    if cls is None or not parts:
        return None
    hint = typing.get_type_hints(cls).get(parts[-1])
    args = typing.get_args(hint) or (hint,)  # list[Logger] -> Logger
    enum = next((a for a in args if isinstance(a, type) and issubclass(a, Choice)), None)
    if enum is None:
        return None
    msg = f"wrong value for '{full_key}': {value!r}; choose one of {', '.join(enum.values())}"
    near = nearest(str(value), enum.values())
    return msg + (f" (did you mean '{near}'?)" if near else "")


def _translate(exc: OmegaConfBaseException, source: str) -> ConfigError:
    full_key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    if isinstance(exc, ConfigKeyError | ConfigAttributeError) and "not in" in str(exc):
        return ConfigError(f"{source}: {_unknown_key_message(str(full_key))}")
    if isinstance(exc, ValidationError):
        choice = _choices_message(str(full_key), getattr(exc, "value", None))
        if choice:
            return ConfigError(f"{source}: {choice}")
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
    """Checks that need more than types (choices are enums, checked by the schema): ranges,
    divisibility, combinations."""
    t, alg = cfg.trainer, cfg.algorithm
    _check(cfg.rollout.n >= 1, f"rollout.n must be >= 1, got {cfg.rollout.n}")
    _check(t.prompts_per_step >= 1, "trainer.prompts_per_step must be >= 1")
    _check(
        t.dynamic_sampling.oversample >= 1.0,
        f"trainer.dynamic_sampling.oversample must be >= 1 (got {t.dynamic_sampling.oversample})",
    )
    _check(
        t.resume in ("auto", "never") or os.path.isdir(t.resume),
        f"trainer.resume must be auto, never or an existing checkpoint directory, got {t.resume!r}",
    )
    if alg.old_log_prob == BehaviourLogProb.rollout:
        _check_rollout_logprobs(cfg)
    _check_parallel(cfg)
    if cfg.mode in (Mode.rl, Mode.sft_rl, Mode.failure_loop):
        _check(
            bool(cfg.data.train_files) or cfg.data.synthetic.task is not None,
            "data.train_files is empty and no data.synthetic.task is set",
        )
    if cfg.mode in (Mode.sft, Mode.sft_rl):
        _check(
            bool(cfg.sft.train_files) or cfg.data.synthetic.task is not None,
            "sft.train_files is empty and no data.synthetic.task is set",
        )
    if cfg.mode == Mode.eval:
        _check_eval(cfg)


def _check_eval(cfg: Config) -> None:
    e = cfg.eval
    _check(
        bool(e.files) or bool(cfg.data.val_files) or cfg.data.synthetic.task is not None,
        "mode=eval needs files: eval.files (or data.val_files, or a data.synthetic.task) is empty",
    )
    _check(e.prompts_per_call >= 1, f"eval.prompts_per_call must be >= 1, got {e.prompts_per_call}")
    for i, f in enumerate([e, *e.files]):
        where = "eval" if i == 0 else f"eval.files[{i - 1}]"
        _check(f.k is None or f.k >= 1, f"{where}.k must be >= 1, got {f.k}")
        _check(
            f.max_tokens is None or f.max_tokens >= 1,
            f"{where}.max_tokens must be >= 1, got {f.max_tokens}",
        )
        _check(
            f.top_p is None or 0 < f.top_p <= 1, f"{where}.top_p must be in (0, 1], got {f.top_p}"
        )
        _check(
            f.temperature is None or f.temperature >= 0,
            f"{where}.temperature must be >= 0, got {f.temperature}",
        )


def _check_rollout_logprobs(cfg: Config) -> None:
    s = cfg.rollout.sampling
    _check(
        s.top_p == 1.0 and s.top_k in (-1, 0),
        "algorithm.old_log_prob=rollout needs full-softmax sampling (rollout.sampling.top_p 1, "
        f"top_k -1), got top_p {s.top_p}, top_k {s.top_k}: the rollout log-probs are "
        "renormalised over the kept tokens",
    )
    _check(
        cfg.algorithm.policy_loss.tis_cap is None,
        "algorithm.policy_loss.tis_cap corrects train / rollout mismatch, which "
        "algorithm.old_log_prob=rollout does not measure; use recompute or drop tis_cap",
    )


def _check_parallel(cfg: Config) -> None:
    """The data-parallel size is derived once here; batches must divide over it."""
    p, world, t = cfg.actor.parallel, cfg.cluster.world_size, cfg.trainer
    _check(
        min(p.tensor, p.pipeline, p.context, p.expert) >= 1,
        f"actor.parallel sizes must be >= 1, got {p}",
    )
    _check(
        cfg.actor.engine != "fsdp" or p.model_parallel * p.expert == 1,
        "actor.engine=fsdp shards over data-parallel ranks only: actor.parallel sizes must be 1",
    )
    _check(
        world % p.model_parallel == 0,
        f"cluster.nnodes x cluster.procs_per_node ({world}) must be a multiple of "
        f"tensor x pipeline x context parallel ({p.model_parallel})",
    )
    dp = data_parallel_size(cfg)
    batch = t.prompts_per_step * cfg.rollout.n
    _check(
        batch % (dp * t.mini_batches_per_step) == 0,
        f"the train batch (trainer.prompts_per_step x rollout.n = {batch}) must divide into "
        f"{t.mini_batches_per_step} mini-batches on each of {dp} data-parallel ranks",
    )
    _check(
        t.prompts_per_step % dp == 0,
        f"trainer.prompts_per_step ({t.prompts_per_step}) must be a multiple of the "
        f"data-parallel size ({dp})",
    )
    if cfg.mode in (Mode.sft, Mode.sft_rl):
        _check(
            cfg.sft.batch_size % dp == 0,
            f"sft.batch_size ({cfg.sft.batch_size}) must be a multiple of the data-parallel "
            f"size ({dp})",
        )


def to_plain(cfg: Any) -> Any:
    """A config (or part of one) as plain dicts, lists and values (enums as their values)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, list | tuple):
        return [to_plain(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_plain(v) for k, v in cfg.items()}
    if isinstance(cfg, Enum):
        return cfg.value
    return cfg


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML, choices written as their values (loadable again)."""
    return OmegaConf.to_yaml(OmegaConf.create(to_plain(cfg)))
