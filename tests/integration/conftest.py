"""One local Ray cluster for the whole integration session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from logics_rl.controller import init_ray

    # More logical CPUs than cores so that several small groups can coexist in the tests.
    init_ray(num_cpus=max(4, os.cpu_count() or 1), log_to_driver=False)
    yield ray
    ray.shutdown()
