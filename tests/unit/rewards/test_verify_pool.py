"""The math-verify process pool: deadlines really fire, killed workers are replaced, and the pool
keeps working afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from logics_rl.rewards import RewardInput, VerifyPool, get_pool, math_verify, shutdown_pools
from logics_rl.rewards._verify_worker import gold_candidates

# SymPy evaluates this power tower while verifying it against the gold: it runs for minutes.
SLOW = r"\boxed{9^{9^{9}}}"
OPTS = {"fallback": "last_number", "strict": True, "float_rounding": 6, "numeric_precision": 15}


def batch(responses, golds):
    return RewardInput.build(responses, ground_truths=golds)


def test_the_slow_input_is_really_slow():
    # Without this the deadline tests below would prove nothing.
    pool = VerifyPool(1)
    try:
        t0 = time.monotonic()
        res = pool.score(
            [(gold_candidates("42"), SLOW)], opts=OPTS, timeout_s=3.0, soft_fraction=None
        )
        assert res.statuses == ["timeout"] and time.monotonic() - t0 >= 3.0
    finally:
        pool.close()


@pytest.mark.parametrize("soft_deadline", [True, False], ids=["worker_alarm", "outer_kill"])
def test_deadline_cuts_a_slow_sample_and_the_rest_score(soft_deadline):
    responses = [r"\boxed{1}", SLOW, r"\boxed{\frac{1}{2}}", r"\boxed{3}", r"\boxed{4}"] * 2
    golds = ["1", "42", "0.5", "4", "4"] * 2
    math_verify(batch(["warm"], ["1"]), num_workers=2)  # start the pool outside the timed part
    t0 = time.monotonic()
    res = math_verify(
        batch(responses, golds),
        num_workers=2,
        timeout_s=1.5,
        soft_deadline=soft_deadline,
        chunk_size=4,
    )
    elapsed = time.monotonic() - t0
    assert res.scores == [1.0, 0.0, 1.0, 0.0, 1.0] * 2
    # The slow answer is the same task twice: scored once, counted per sample.
    assert res.counters["math_verify/timeout"] == 2
    assert res.counters["math_verify/error"] == 0
    if soft_deadline:  # the worker's own alarm stopped it at 0.8 x 1.5 s; nobody was killed
        assert res.counters["math_verify/worker_restart"] == 0
        assert elapsed < 1.5 + 10.0  # far below the minutes SLOW runs for (loaded CI leaves slack)
    else:  # only the parent's hard deadline: the worker was killed at 1.5 s and replaced
        assert res.counters["math_verify/worker_restart"] == 1
        assert elapsed < 1.5 + 10.0
    # The pool keeps working.
    assert math_verify(batch([r"\boxed{2}", "3"], ["2", "3"]), num_workers=2).scores == [1.0, 1.0]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGABRT], ids=["sigkill", "abort"])
def test_a_worker_killed_mid_call_is_replaced_and_its_work_redone(sig):
    # SIGKILL: the OOM killer or kill -9; SIGABRT: what os.abort() or a failed C assertion raises.
    pool = VerifyPool(1)
    try:
        pool.score([(gold_candidates("1"), "1")], opts=OPTS, timeout_s=10)  # started and warm
        (old_pid,) = pool.pids()
        tasks = [(gold_candidates(str(k)), rf"\boxed{{{k}}}") for k in range(3)]
        tasks += [(gold_candidates("42"), SLOW)] + [
            (gold_candidates(str(k)), rf"\boxed{{{k}}}") for k in range(3, 6)
        ]
        killer = threading.Timer(0.7, os.kill, (old_pid, sig))  # while it is on SLOW
        killer.start()
        res = pool.score(tasks, opts=OPTS, timeout_s=2.0, chunk_size=16)
        killer.join()
        assert res.restarts == 1
        assert pool.pids() != [old_pid]
        # The killed sample was retried once on the new worker (and then hit its deadline); the
        # samples after it in the chunk were re-queued and scored.
        assert res.statuses == ["ok"] * 3 + ["timeout"] + ["ok"] * 3
        assert res.scores == [1.0] * 3 + [0.0] + [1.0] * 3
    finally:
        pool.close()


def test_an_idle_worker_that_died_is_replaced_on_the_next_call():
    pool = VerifyPool(2)
    try:
        pool.score([(gold_candidates("1"), "1")] * 2, opts=OPTS, timeout_s=10)
        for pid in pool.pids():
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        res = pool.score(
            [(gold_candidates("2"), r"\boxed{2}"), (gold_candidates("3"), r"\boxed{4}")],
            opts=OPTS,
            timeout_s=10,
        )
        assert res.scores == [1.0, 0.0] and res.restarts >= 1
    finally:
        pool.close()


def test_shared_pool_is_reused_and_shut_down():
    math_verify(batch(["1"], ["1"]), num_workers=2)
    pool = get_pool(2)
    pids = pool.pids()
    assert len(pids) == 2
    math_verify(batch(["2"], ["2"]), num_workers=2)
    assert get_pool(2) is pool and pool.pids() == pids  # same processes, reused
    shutdown_pools()
    assert pool.pids() == []
    for pid in pids:  # really gone (reaped by close)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert math_verify(batch([r"\boxed{5}"], ["5"]), num_workers=2).scores == [
        1.0
    ]  # restarts lazily


def test_concurrent_calls_from_threads():
    results = {}

    def run(k):
        results[k] = math_verify(
            batch([rf"\boxed{{{k}}}", r"\boxed{0}"], [str(k), "9"]), num_workers=2
        ).scores

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {k: [1.0, 0.0] for k in range(4)}
