"""Importing the reward / filter plugin kit (and the registry plumbing they share) must not load
torch, Ray, vLLM or Megatron."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HEAVY = ("torch", "ray", "vllm", "megatron", "sympy", "math_verify")  # sympy: workers only


def test_plugin_kit_imports_nothing_heavy():
    code = (
        "import sys, logics_rl.registry, logics_rl.rewards, logics_rl.filters, logics_rl.testing\n"
        "from logics_rl.rewards import REWARDS\n"
        "from logics_rl.filters import FILTERS\n"
        "REWARDS.names(); FILTERS.names()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
