"""Shared test settings: GPU tests skip without CUDA."""

from __future__ import annotations

import pytest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A 2-layer, 128-wide Qwen3 with the character tokenizer, built once per session."""
    from logics_rl.models.tiny import TinySize, build_tiny_qwen3

    return build_tiny_qwen3(str(tmp_path_factory.mktemp("tiny_qwen3")), TinySize(), seed=0)
