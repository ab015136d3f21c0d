"""The runnable examples in the filter modules' docstrings run and print what they claim."""

from __future__ import annotations

import doctest

import pytest

import logics_rl.filters
import logics_rl.filters.base


@pytest.mark.parametrize(
    "module", [logics_rl.filters, logics_rl.filters.base], ids=lambda m: m.__name__
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
