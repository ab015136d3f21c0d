"""Named plugin registries: built-ins by short name, ``pkg.module:attr`` import paths, entry points.

Used by advantage estimators, policy losses, rewards and filters. Pure Python on purpose: reward
and filter plugins are imported by other projects, so this module must not pull in torch or Ray.

    ADVANTAGES = Registry("advantage estimator", entry_point_group="logics_rl.advantages")

    @ADVANTAGES.register("grpo")
    def grpo(...): ...

    ADVANTAGES.get("grpo")                   # built-in or registered by decorator
    ADVANTAGES.get("my_pkg.adv:leave_two")   # import path
    ADVANTAGES.get("my_plugin_name")         # entry point in group logics_rl.advantages
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any


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
