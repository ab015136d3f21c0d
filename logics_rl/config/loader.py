"""Load a recipe YAML plus ``key=value`` overrides into the typed ``Config``.

Errors name the key: an unknown or misspelt key suggests the nearest valid one; a value of the
wrong type names the key, the value and the expected type.

    cfg = load_config("recipes/dapo_qwen3_8b.yaml", ["trainer.seed=3", "rollout.n=16"])
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from enum import Enum
from typing import Any

import yaml
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
    except (TypeError, ValueError) as exc:  # e.g. a list given where the schema has a mapping
        raise ConfigError(
            f"{source}: {exc} (a list where a mapping is expected, or the reverse)"
        ) from None


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
        except (OmegaConfBaseException, yaml.YAMLError) as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"overrides {list(overrides)}: cannot parse: {first}") from None
        cfg = _merge(cfg, dot, "overrides")
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise _translate(exc, path or "config") from None
    validate(obj)
    return obj


def preflight(cfg: Config) -> None:
    """Build every plugin the run will use (reward terms, filters, advantage estimator, policy
    loss) and check their params, before anything starts: a bad name or parameter is a
    ``ConfigError`` here, not a traceback from inside a worker later. Starts no process."""
    from logics_rl.algorithms import ADVANTAGES, POLICY_LOSSES
    from logics_rl.filters import build_filters
    from logics_rl.registry import UnknownPluginError, check_params
    from logics_rl.rewards import build_reward

    alg = cfg.algorithm
    try:
        check_params(
            ADVANTAGES.get(alg.advantage.estimator),
            alg.advantage.params,
            what="algorithm.advantage.params",
        )
        check_params(
            POLICY_LOSSES.get(alg.policy_loss.name),
            alg.policy_loss.params,
            what="algorithm.policy_loss.params",
        )
        build_reward(cfg.reward).close()
        build_filters(cfg.filters)
    except (UnknownPluginError, ValueError, TypeError, ImportError, AttributeError) as exc:
        raise ConfigError(str(exc)) from None


def _non_finite(obj: Any, where: str = "") -> list[str]:
    """Dotted keys of the NaN / inf numbers anywhere in a config."""
    if dataclasses.is_dataclass(obj):
        return [
            k
            for f in dataclasses.fields(obj)
            for k in _non_finite(getattr(obj, f.name), f"{where}{f.name}.")
        ]
    if isinstance(obj, float) and not math.isfinite(obj):
        return [where.rstrip(".")]
    if isinstance(obj, (list, tuple)):
        return [k for i, v in enumerate(obj) for k in _non_finite(v, f"{where}{i}.")]
    if isinstance(obj, dict):
        return [k for key, v in obj.items() for k in _non_finite(v, f"{where}{key}.")]
    return []


# Ranges of numeric settings, checked before a run starts (None values mean "unset" and pass).
# key: (low, high, low included); high is always included.
_N, _P = (1, None, True), (0, None, True)  # counts >= 1, amounts >= 0
_POS = (0, None, False)  # > 0
_FRACTION, _PROB = (0, 1, True), (0, 1, False)  # [0, 1], (0, 1]
_RANGES: dict[str, tuple] = {
    **dict.fromkeys(
        [
            "model.tiny.hidden", "model.tiny.layers", "model.tiny.heads", "model.tiny.kv_heads",
            "model.tiny.max_positions", "rollout.n", "data.max_prompt_length", "data.synthetic.train_size",
            "data.synthetic.min_digits", "data.synthetic.max_digits", "rollout.max_response_length",
            "rollout.weight_sync.bucket_mb", "rollout.weight_sync.probe_length", "validation.k",
            "actor.max_tokens_per_micro_batch", "actor.logprob_chunk_size", "algorithm.kl.horizon",
            "trainer.prompts_per_step", "trainer.mini_batches_per_step", "trainer.epochs_per_step",
            "trainer.total_epochs", "trainer.total_steps", "trainer.dynamic_sampling.max_gen_batches",
            "cluster.nnodes", "cluster.procs_per_node", "sft.max_length",
            "sft.batch_size", "sft.epochs", "sft.total_steps", "curate.annotate.judge.max_tokens",
            "curate.annotate.judge.batch_size", "curate.dedup.num_perm", "curate.dedup.shingle_size",
            "curate.dedup.bands", "curate.dedup.rows", "curate.dedup.max_rounds",
            "curate.decontaminate.ngram", "curate.distill.k", "curate.distill.max_tokens",
            "curate.distill.batch_size", "curate.stratify.bins", "eval.k", "eval.max_tokens",
            "eval.prompts_per_call", "failure_loop.max_probes", "failure_loop.k",
            "failure_loop.max_tokens", "failure_loop.retrieval.top_k",
            "failure_loop.synthesizer.per_failure", "failure_loop.verify.k",
            "failure_loop.verify.max_tokens",
        ],
        _N,
    ),
    **dict.fromkeys(
        [
            "data.synthetic.val_size", "rollout.weight_sync.probe_sequences", "validation.every",
            "actor.optim.warmup_steps", "actor.optim.weight_decay", "sft.optim.warmup_steps",
            "sft.optim.weight_decay", "algorithm.kl.loss_coef", "algorithm.kl.reward_coef",
            "actor.logprob_keep_logits_mb", "trainer.save_every", "trainer.keep_last",
            "trainer.max_restarts", "trainer.max_nonfinite_steps",
            "sft.val_every", "sft.save_every", "curate.workers", "rollout.sampling.temperature",
            "validation.temperature", "curate.annotate.judge.temperature",
            "curate.distill.temperature", "eval.temperature", "failure_loop.temperature",
            "failure_loop.verify.temperature", "reward.num_workers", "reward.max_failed_batches",
            "failure_loop.sft_steps",
        ],
        _P,
    ),
    **dict.fromkeys(
        [
            "rollout.vllm.kv_cache_gb", "actor.optim.lr", "actor.optim.eps", "sft.optim.lr",
            "sft.optim.eps", "algorithm.kl.target", "cluster.cpus_per_proc",
            "cluster.call_timeout_s", "cluster.repeat_call_timeout_factor",
            "cluster.repeat_call_timeout_min_s", "cluster.heartbeat_s",
            "rollout.weight_sync.probe_tol", "algorithm.policy_loss.tis_cap", "failure_loop.sft_lr",
            "algorithm.policy_loss.loss_norm_const", "reward.timeout_s", "reward.term_timeout_s",
        ],
        _POS,
    ),
    **dict.fromkeys(
        [
            "data.synthetic.teacher_error_rate", "data.synthetic.sft_borrow_keep",
            "actor.optim.min_lr_ratio", "sft.optim.min_lr_ratio", "failure_loop.fail_below",
            "failure_loop.verify.agree", "failure_loop.mix_ratio",
        ],
        _FRACTION,
    ),
    **dict.fromkeys(
        [
            "rollout.vllm.gpu_memory_utilization", "rollout.sampling.top_p", "validation.top_p",
            "curate.dedup.threshold", "curate.distill.top_p", "eval.top_p", "failure_loop.top_p",
            "failure_loop.verify.top_p",
        ],
        _PROB,
    ),
}  # fmt: skip


def _value_at(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _check_ranges(cfg: Config) -> None:
    for key, (low, high, low_in) in _RANGES.items():
        v = _value_at(cfg, key)
        if v is None:
            continue
        ok = (v >= low if low_in else v > low) and (high is None or v <= high)
        if not ok:
            if high is not None:
                want = f"in {'[' if low_in else '('}{low}, {high}]"
            else:
                want = f"{'>=' if low_in else '>'} {low}"
            raise ConfigError(f"{key} must be {want}, got {v}")
    top_k = cfg.rollout.sampling.top_k
    _check(
        top_k == -1 or top_k >= 1, f"rollout.sampling.top_k must be -1 (off) or >= 1, got {top_k}"
    )
    syn = cfg.data.synthetic
    _check(
        syn.min_digits <= syn.max_digits <= 18,
        f"data.synthetic: need min_digits ({syn.min_digits}) <= max_digits ({syn.max_digits}) <= 18",
    )
    _check(
        syn.task in (None, "arithmetic"),
        f"data.synthetic.task must be arithmetic or null, got {syn.task!r}",
    )
    tiny = cfg.model.tiny
    _check(
        tiny.hidden % tiny.heads == 0
        and (tiny.hidden // tiny.heads) % 2 == 0
        and tiny.heads % tiny.kv_heads == 0,
        f"model.tiny: hidden ({tiny.hidden}) must split into heads ({tiny.heads}) of an even "
        f"size, and heads into kv_heads ({tiny.kv_heads}) groups",
    )
    if cfg.model.path == "tiny":
        need = cfg.data.max_prompt_length + cfg.rollout.max_response_length
        _check(
            tiny.max_positions >= need,
            f"model.tiny.max_positions ({tiny.max_positions}) must hold data.max_prompt_length + "
            f"rollout.max_response_length ({need})",
        )
    for where, optim in (("actor.optim", cfg.actor.optim), ("sft.optim", cfg.sft.optim)):
        b = optim.betas
        _check(
            len(b) == 2 and all(isinstance(x, float | int) and 0 <= x < 1 for x in b),
            f"{where}.betas must be two numbers in [0, 1), got {b}",
        )
    _check_string_lists(cfg)


def _check_string_lists(obj: Any, where: str = "") -> None:
    """Fields typed ``list[str]`` hold strings only (the YAML merge lets nested lists through)."""
    if not dataclasses.is_dataclass(obj):
        return
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{where}{f.name}"
        if hints[f.name] == list[str] and value is not None:
            bad = [v for v in value if not isinstance(v, str)]
            _check(not bad, f"{key} must be a list of strings, got {value}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                _check_string_lists(v, f"{key}[{i}].")
        else:
            _check_string_lists(value, key + ".")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg: Config) -> None:
    """Checks that need more than types (choices are enums, checked by the schema): ranges,
    divisibility, combinations."""
    t, alg = cfg.trainer, cfg.algorithm
    bad = _non_finite(cfg)
    _check(not bad, f"{', '.join(bad)}: must be a finite number (got NaN or inf)")
    _check_ranges(cfg)
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
    _check_reward(cfg)
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


def _check_reward(cfg: Config) -> None:
    """Per-term settings (the scalar ones are in ``_RANGES``)."""
    for k, term in enumerate(cfg.reward.terms):
        _check(
            term.timeout_s is None or term.timeout_s > 0,
            f"reward.terms[{k}].timeout_s must be > 0, got {term.timeout_s}",
        )


def _check_eval(cfg: Config) -> None:
    e = cfg.eval
    _check(
        bool(e.files) or bool(cfg.data.val_files) or cfg.data.synthetic.task is not None,
        "mode=eval needs files: eval.files (or data.val_files, or a data.synthetic.task) is empty",
    )
    for i, f in enumerate(e.files):  # eval's own settings are in _RANGES
        where = f"eval.files[{i}]"
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
        cfg.actor.engine != "fsdp" or (p.model_parallel * p.expert == 1 and not p.sequence),
        "actor.engine=fsdp shards over data-parallel ranks only: actor.parallel sizes must be 1 "
        "and actor.parallel.sequence false (actor.engine=megatron has tensor / pipeline parallel)",
    )
    _check(
        cfg.actor.engine != "megatron" or (p.context == 1 and p.expert == 1),
        "actor.engine=megatron runs dense models without context parallelism so far: "
        "actor.parallel.context and actor.parallel.expert must be 1",
    )
    _check(
        not p.sequence or p.tensor > 1,
        "actor.parallel.sequence cuts the sequence over tensor-parallel ranks: it needs "
        "actor.parallel.tensor > 1",
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
