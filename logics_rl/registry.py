"""Named plugin registries: built-ins by short name, ``pkg.module:attr`` import paths, entry points.

Used by advantage estimators, policy losses, rewards and filters. Also the plumbing that rewards
and filters share (binding a configured term: ``as_config``, ``load_plugin``, ``check_params``,
``term_label``; input checks: ``check_lengths``), so neither package depends on the other for it.
Pure Python on purpose: reward and filter plugins are imported by other projects, so this module
must not pull in torch or Ray.

    ADVANTAGES = Registry("advantage estimator", entry_point_group="logics_rl.advantages")

    @ADVANTAGES.register("grpo")
    def grpo(...): ...

    ADVANTAGES.get("grpo")                   # built-in or registered by decorator
    ADVANTAGES.get("my_pkg.adv:leave_two")   # import path
    ADVANTAGES.get("my_plugin_name")         # entry point in group logics_rl.advantages
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from importlib.metadata import entry_points
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class UnknownPluginError(KeyError):
    """A name that is neither registered, nor an import path, nor an entry point."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to ``name`` (for "did you mean" hints), or None."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return match[0] if match else None


def load_import_path(path: str) -> Any:
    """Load ``pkg.module:attr`` (attr may be dotted). Errors name the path."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"import path {path!r} must look like 'pkg.module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} for {path!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ImportError(f"{module_name!r} has no attribute {attr!r} (from {path!r})") from exc
    return obj


class Registry:
    """A name → object table for one kind of plugin."""

    def __init__(self, kind: str, entry_point_group: str):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, Any] = {}

    def register(self, name: str | None = None, *, overwrite: bool = False) -> Callable[[Any], Any]:
        """Decorator: ``@REG.register("name")`` (defaults to the object's ``__name__``)."""

        def deco(obj: Any) -> Any:
            key = name or obj.__name__
            if key in self._items and self._items[key] is not obj and not overwrite:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj

        return deco

    def _entry_points(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=self.entry_point_group)}

    def names(self) -> list[str]:
        """Built-in and registered names plus entry point names, sorted."""
        return sorted(set(self._items) | set(self._entry_points()))

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except (UnknownPluginError, ImportError):
            return False
        return True

    def get(self, name: str) -> Any:
        """Resolve a registered name, a ``pkg.module:attr`` path, or an entry point name."""
        if not isinstance(name, str) or not name:
            raise UnknownPluginError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._items:
            return self._items[name]
        if ":" in name:
            return load_import_path(name)
        eps = self._entry_points()
        if name in eps:
            obj = eps[name].load()
            self._items.setdefault(name, obj)
            return obj
        valid = self.names()
        hint = nearest(name, valid)
        msg = f"unknown {self.kind} {name!r}"
        if hint:
            msg += f" (did you mean {hint!r}?)"
        msg += (
            f"; valid names: {', '.join(valid) or '(none)'}; or an import path 'pkg.module:attr'"
            f" or an entry point in group {self.entry_point_group!r}"
        )
        raise UnknownPluginError(msg)


# --------------------------------------------------------------------------- binding configured terms
def _unknown(what: str, kind: str, key: str, valid: list[str]) -> ValueError:
    """``<what>: unknown <kind> '<key>' (did you mean ...?); valid <kind>s: ...``."""
    hint = nearest(key, valid)
    msg = f"{what}: unknown {kind} {key!r}"
    msg += f" (did you mean {hint!r}?)" if hint else ""
    return ValueError(msg + f"; valid {kind}s: {', '.join(valid) or '(none)'}")


def _literal_choices(fn: Callable[..., Any]) -> dict[str, tuple[Any, ...]]:
    """Parameters annotated ``Literal[...]`` and their allowed values (empty if hints fail)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # plugin annotations that do not resolve: no literal checks
        return {}
    out = {}
    for pname, hint in hints.items():
        options = [hint] if typing.get_origin(hint) is Literal else list(typing.get_args(hint))
        for opt in options:
            if typing.get_origin(opt) is Literal:
                out[pname] = typing.get_args(opt)
    return out


def check_params(fn: Callable[..., Any], params: Mapping[str, Any], *, what: str) -> dict[str, Any]:
    """Check ``params`` against ``fn(first_arg, **params)``; errors name ``what`` and the nearest name.

    Also checks values of parameters annotated with ``Literal[...]``. Returns a plain dict.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: cannot read the signature of {fn!r}: {exc}") from exc
    items = list(sig.parameters.values())
    if not items or items[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    ):
        raise TypeError(
            f"{what}: {getattr(fn, '__name__', fn)!r} must take the batch/group as its first positional argument"
        )
    rest = items[1:] if items[0].kind != inspect.Parameter.VAR_POSITIONAL else items
    var_kw = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in rest)
    valid = [
        p.name
        for p in rest
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if not var_kw:
        for key in params:
            if key not in valid:
                raise _unknown(what, "parameter", key, valid)
    missing = [
        p.name
        for p in rest
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name not in params
    ]
    if missing:
        raise ValueError(f"{what}: missing required parameter(s) {', '.join(missing)}")
    for key, choices in _literal_choices(fn).items():
        if key in params and params[key] not in choices:
            raise ValueError(
                f"{what}: parameter {key}={params[key]!r} is not one of {', '.join(map(repr, choices))}"
            )
    return dict(params)


def term_label(name: str, taken: set[str]) -> str:
    """A short metric label for a configured name (``pkg.mod:fn`` -> ``fn``), unique among ``taken``."""
    base = name.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    label, k = base, 2
    while label in taken:
        label, k = f"{base}_{k}", k + 1
    return label


def plain(value: Any) -> Any:
    """Config containers (OmegaConf DictConfig / ListConfig included) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(v) for v in value]
    return value


def as_config(cls: type[T], value: Any, *, what: str) -> T:
    """``value`` as the schema dataclass ``cls``, so that every default comes from the schema.

    An instance is returned as is; a mapping (a plain dict, an OmegaConf node) becomes one, with
    the schema's defaults for missing keys. An unknown key names the nearest valid one.
    """
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a {cls.__name__} or a mapping, got {type(value).__name__}")
    data = plain(value)
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in data:
        if key not in valid:
            raise _unknown(what, "key", key, valid)
    return cls(**data)


def load_plugin(registry: Registry, name: str, params: Any, *, what: str) -> tuple[Any, dict]:
    """The plugin ``name`` resolves to and its ``params`` as a plain dict (not yet checked)."""
    try:
        fn = registry.get(name)
    except UnknownPluginError as exc:
        raise UnknownPluginError(f"{what}: {exc.args[0]}") from None
    if not callable(fn):
        raise TypeError(f"{what}: {fn!r} is not callable")
    params = plain(params or {})
    if not isinstance(params, dict):
        raise TypeError(f"{what}: params must be a mapping, got {type(params).__name__}")
    return fn, params


def check_lengths(owner: str, n: int, named: Mapping[str, Sized | None]) -> None:
    """Every list in ``named`` (None: not given) has one entry per response; errors name it."""
    for name, values in named.items():
        if values is not None and len(values) != n:
            raise ValueError(
                f"{owner}.{name} has {len(values)} entries but there are {n} responses"
            )
