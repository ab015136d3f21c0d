"""The runnable examples in the reward modules' docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["base", "boxed", "cosine", "format", "overlong", "repetition", "verify", "__init__"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(
        "logics_rl.rewards" if name == "__init__" else f"logics_rl.rewards.{name}"
    )
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module.__name__} has no runnable example"
    assert result.failed == 0
