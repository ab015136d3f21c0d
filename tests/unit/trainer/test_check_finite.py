"""``RunState.check_finite``: the ``trainer.on_nonfinite`` policy, counted across the run and kept
in checkpoints. (The engine never applies an optimizer step whose gradient norm is not finite;
``tests/faults/test_nonfinite.py`` injects NaN into a real run's loss.)"""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from logics_rl.config.loader import load_config
from logics_rl.data.sampler import EpochSampler
from logics_rl.errors import TrainingError
from logics_rl.trainer.run_state import RunState


def state(tmp_path, *overrides: str) -> tuple[RunState, io.StringIO]:
    base = [f"trainer.run_dir={tmp_path}", "trainer.loggers=[jsonl]", "data.train_files=[x.jsonl]"]
    cfg = load_config(None, [*base, *overrides])
    out = io.StringIO()
    rs = RunState(
        cfg, str(tmp_path), EpochSampler(4, seed=0), name="t", console=Console(file=out, width=300)
    )
    return rs, out


def test_skip_counts_up_to_the_limit_then_stops(tmp_path):
    rs, out = state(tmp_path, "trainer.max_nonfinite_steps=2")
    keys = ("loss", "grad_norm")
    m = {"loss": 1.0, "grad_norm": 2.0}
    rs.check_finite(m, keys, 0.0)
    assert m["train/nonfinite_steps"] == 0.0 and out.getvalue() == ""
    rs.step = 3
    m = {"loss": math.nan, "grad_norm": math.nan}
    rs.check_finite(m, keys, 1.0)
    assert m["train/nonfinite_steps"] == 1.0
    assert "step 3: non-finite loss, grad_norm; 1 optimizer step(s) skipped" in out.getvalue()
    assert "(1 of trainer.max_nonfinite_steps=2)" in out.getvalue()
    rs.check_finite({"loss": math.inf, "grad_norm": 1.0}, keys, 0.0)  # counted though applied
    assert rs.nonfinite_steps == 2
    with pytest.raises(TrainingError, match="3 so far, over trainer.max_nonfinite_steps=2"):
        rs.check_finite({"loss": 1.0, "grad_norm": math.nan}, keys, 1.0)


def test_stop_raises_at_the_first(tmp_path):
    rs, _ = state(tmp_path, "trainer.on_nonfinite=stop")
    rs.step = 7
    with pytest.raises(TrainingError, match=r"step 7: non-finite grad_norm.*on_nonfinite=stop"):
        rs.check_finite({"loss": 1.0, "grad_norm": math.nan}, ("loss", "grad_norm"), 1.0)


def test_the_count_is_kept_in_checkpoints(tmp_path):
    class Workers:
        def save_checkpoint(self, path: str) -> None:
            pass

        def load_checkpoint(self, path: str) -> None:
            pass

    rs, _ = state(tmp_path)
    rs.step = 2
    rs.check_finite({"loss": math.nan}, ("loss",), 1.0)
    rs.save(Workers())
    again, _ = state(tmp_path)
    assert again.resume(Workers()) is not None
    assert again.step == 2 and again.nonfinite_steps == 1
