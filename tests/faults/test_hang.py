"""A hung worker (SIGSTOP, a real signal on a real Ray actor) is reported, not waited on.

After one call of a method has set its scale, a stopped rank makes the next call print a
heartbeat line naming the method, the pending rank and its process state, then fail with a
``WorkerTimeoutError`` naming the pending rank and the config keys that set the timeout, within
the repeat-call timeout, not the first-call one (an hour by default)."""

from __future__ import annotations

import os
import re
import signal
import sys
import time

import pytest

from logics_rl.controller import Dispatch, ResourcePool, Worker, WorkerGroup, register
from logics_rl.controller.errors import WorkerTimeoutError

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module", autouse=True)
def _by_value(ray_cluster):
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Sleeper(Worker):
    @register(dispatch=Dispatch.ONE_TO_ALL)
    def work(self, seconds: float) -> int:
        time.sleep(seconds)
        return self.rank


def test_a_stopped_rank_is_reported_within_the_repeat_call_timeout(ray_cluster, capfd):
    pool = ResourcePool([2])
    group = WorkerGroup(
        pool, Sleeper, timeout_s=3600, repeat_factor=10, repeat_min_s=4, heartbeat_s=1.5
    )
    stopped = None
    try:
        assert group.work(0.05) == [0, 1]  # the scale: 10 x 0.05 s < 4 s, so 4 s next time
        assert group.timeout_for("work")[0] == 4
        stopped = group.pids()[1]
        os.kill(stopped, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(WorkerTimeoutError) as err:
            group.work(0.05)
        took = time.monotonic() - t0
        assert 4 <= took < 8, took
        with capfd.disabled():
            print(
                f"\nmeasured: SIGSTOP of rank 1 -> WorkerTimeoutError in {took:.1f} s (timeout 4 s)"
            )
        msg = str(err.value)
        assert err.value.pending_ranks == [1] and "work() did not finish within 4 s" in msg
        assert f"rank 1 pid {stopped} is stopped" in msg
        assert "cluster.repeat_call_timeout_min_s" in msg
        err_lines = capfd.readouterr().err.splitlines()
        lines = [x for x in err_lines if re.match(r"waiting \d+ s for work on ranks \[1\]; ", x)]
        assert lines, err_lines
        assert f"rank 1 pid {stopped} is stopped (SIGSTOP; kill -CONT {stopped}" in lines[0]
        assert lines[0].endswith("(timeout 4 s)")
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
        group.kill()
        pool.remove()
