"""Reward plugins that misbehave for real: hang forever, abort the interpreter, get SIGKILLed,
raise, return NaN / the wrong count / a 1 MB string. Each costs one batch's score of that term
(counted by kind), the term's process starts again, and too many failures in a row stop the run
with an error naming the term."""

from __future__ import annotations

import logging
import os
import time

import pytest

from logics_rl.config.schema import RewardConfig, RewardTermConfig
from logics_rl.rewards import RewardInput, RewardTermError, build_reward

# The batch's first prompt says how to misbehave, so one built reward sees every fault in turn.
PLUGIN = """
import math, os, signal, time


def faulty(batch, *, bonus=1.0):
    mode = batch.prompts[0]
    if mode == "hang":
        while True:
            time.sleep(1)
    if mode == "spin":
        while True:
            pass
    if mode == "abort":
        os.abort()
    if mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "raise":
        raise RuntimeError("plugin bug " + "x" * 1_000_000)
    if mode == "nan":
        return [math.nan] * len(batch)
    if mode == "short":
        return [1.0]
    if mode == "string":
        return "y" * 1_000_000
    if mode == "pid":
        return [float(os.getpid())] * len(batch)
    return [bonus] * len(batch)
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "faulty_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "faulty_plugin:faulty"


def batch(mode: str, n: int = 3) -> RewardInput:
    return RewardInput.build([r"\boxed{1}"] * n, prompts=[mode] * n)


def build(plugin: str, **reward) -> object:
    terms = [RewardTermConfig("format", weight=2.0), RewardTermConfig(plugin, timeout_s=2.0)]
    return build_reward(RewardConfig(terms=terms, **reward))


def test_an_outside_plugin_runs_in_its_own_process_and_built_ins_in_this_one(plugin):
    reward = build(plugin)
    try:
        fmt, term = reward.terms
        assert fmt.isolated is None and term.isolated is not None
        res = reward(batch("pid"))
        assert res.components["faulty"] == [float(term.isolated.pid)] * 3
        assert term.isolated.pid != os.getpid()
        assert reward(batch("ok")).scores == [2.0 + 1.0] * 3
    finally:
        reward.close()


@pytest.mark.parametrize(
    "mode, kind",
    [
        ("hang", "timeout"),
        ("spin", "timeout"),
        ("abort", "crash"),
        ("sigkill", "crash"),
        ("raise", "error"),
        ("nan", "error"),
        ("short", "error"),
        ("string", "error"),
    ],
)
def test_each_fault_costs_one_batch_and_the_term_comes_back(plugin, mode, kind, caplog):
    reward = build(plugin)
    try:
        term = reward.terms[1]
        reward(batch("ok"))
        first_pid = term.isolated.pid
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING):
            res = reward(batch(mode))
        elapsed = time.monotonic() - t0
        print(f"measured: reward plugin {mode} -> {kind}, batch scored in {elapsed:.2f} s")
        # format still scores; the faulty term scores 0 and is counted per sample, by kind
        assert res.scores == [2.0] * 3
        assert res.components["faulty"] == [0.0] * 3
        assert res.counters == {f"reward/faulty/{kind}": 3}
        assert "'faulty'" in caplog.text
        assert len(caplog.text) < 40_000  # a 1 MB message or result is not copied into the log
        if kind == "timeout":
            assert 2.0 <= elapsed < 2.0 + 10.0
            assert "no result within 2 s" in caplog.text
        if kind == "crash":
            assert ("SIGABRT" if mode == "abort" else "SIGKILL") in caplog.text
        if kind in ("timeout", "crash"):  # the old process is gone (reaped), a new one serves
            assert term.isolated.pid is None
            with pytest.raises(ProcessLookupError):
                os.kill(first_pid, 0)
        res = reward(batch("ok"))
        assert res.scores == [3.0] * 3 and res.counters == {}
    finally:
        reward.close()


def test_too_many_failed_batches_in_a_row_stop_with_an_error_naming_the_term(plugin):
    reward = build(plugin, max_failed_batches=2)
    try:
        reward(batch("raise"))
        reward(batch("ok"))  # a success resets the count
        reward(batch("abort"))
        with pytest.raises(RewardTermError) as info:
            reward(batch("nan"))
        msg = str(info.value)
        assert "reward term 'faulty' (faulty_plugin:faulty) failed on 2 batches in a row" in msg
        assert "reward.max_failed_batches=2" in msg and "is not finite" in msg
    finally:
        reward.close()


def test_isolation_needs_an_importable_function(plugin):
    from logics_rl.rewards import REWARDS

    @REWARDS.register("_test_local_term", overwrite=True)
    def local(b):
        return [0.5] * len(b)

    reward = build_reward(RewardConfig(terms=[RewardTermConfig("_test_local_term")]))
    assert reward.terms[0].isolated is None and reward(batch("ok")).scores == [0.5] * 3
    with pytest.raises(ValueError, match="isolate=true .* move it into a module"):
        build_reward(RewardConfig(terms=[RewardTermConfig("_test_local_term", isolate=True)]))
    # and an outside plugin can be kept in-process on purpose
    reward = build_reward(RewardConfig(terms=[RewardTermConfig(plugin, isolate=False)]))
    assert reward.terms[0].isolated is None
    assert reward(batch("pid")).scores == [float(os.getpid())] * 3
