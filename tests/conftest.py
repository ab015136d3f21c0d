"""Shared test settings: GPU tests skip without CUDA; one local Ray cluster per session for the
integration and fault tests; the tiny model built once."""

from __future__ import annotations

import os

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


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from logics_rl.controller import init_ray

    # More logical CPUs than cores so that several small groups can coexist in the tests.
    # Worker output is forwarded as in a real run (pytest captures it; test_quickstart checks
    # that the console filter of logics_rl/logs.py keeps the known start-up noise out of it).
    init_ray(num_cpus=max(4, os.cpu_count() or 1), log_to_driver=True)
    yield ray
    ray.shutdown()
