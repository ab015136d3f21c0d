"""Half-precision dtypes that a CPU only emulates: which ones, and the start-up warning naming
every config key that asks for one (``trainer.setup.start_workers`` prints it)."""

from __future__ import annotations

import pytest
import torch

from logics_rl.config.loader import load_config
from logics_rl.engines.common import cpu_emulated_dtypes
from logics_rl.main import QUICKSTART
from logics_rl.trainer.setup import emulated_dtype_keys, emulated_dtype_warnings

_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_amx_fp16_supported")


@pytest.mark.parametrize(
    "native, emulated",
    [
        ((), ["bfloat16", "float16"]),  # an AVX2 CPU
        (("_is_avx512_bf16_supported",), ["float16"]),  # AVX512-BF16 (Zen 4, Cooper Lake)
        (("_is_amx_tile_supported",), ["float16"]),  # AMX-BF16 (Sapphire Rapids)
        (("_is_amx_tile_supported", "_is_amx_fp16_supported"), []),  # AMX-FP16 (Granite Rapids)
    ],
)
def test_emulated_dtypes_follow_the_cpu_flags(monkeypatch, native, emulated):
    for name in _CHECKS:
        monkeypatch.setattr(torch.cpu, name, lambda n=name: n in native, raising=False)
    assert cpu_emulated_dtypes() == emulated


def test_emulated_dtypes_without_the_checks(monkeypatch):
    """A torch without these private checks: assume emulation (a warning, never a failure)."""
    for name in _CHECKS:
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert cpu_emulated_dtypes() == ["bfloat16", "float16"]


def test_warning_names_every_key_that_asks_for_an_emulated_dtype():
    cfg = load_config("recipes/smollm2_arith_cpu.yaml", ["actor.dtype=float16"])
    assert emulated_dtype_keys(cfg, {"bfloat16", "float16"}) == [
        ("rollout.dtype", "bfloat16"),
        ("actor.dtype", "float16"),
    ]
    assert emulated_dtype_keys(cfg, {"float16"}) == [("actor.dtype", "float16")]
    assert emulated_dtype_keys(cfg, set()) == []
    (line,) = emulated_dtype_warnings(cfg, {"float16"})
    assert line.startswith("actor.dtype=float16 on a CPU without float16 matmul instructions")
    assert line.endswith("set actor.dtype=float32")


def test_default_config_warns_about_nothing():
    """The quickstart's ``auto`` is float32 on CPU: nothing to warn about on any CPU."""
    cfg = load_config(QUICKSTART, [])
    assert emulated_dtype_keys(cfg, {"bfloat16", "float16"}) == []
