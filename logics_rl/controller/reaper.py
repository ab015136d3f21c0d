"""Clean up after a driver that died without shutting its local Ray instance down.

When the driver started a local Ray instance and is then SIGKILLed (the OOM killer, ``kill -9``),
Ray's head processes and workers exit on their own, but some of its helper processes (the
dashboard and runtime-env agents) are orphaned and keep running, holding memory. ``start``
launches this module as a small watcher in its own session: while the driver lives it records
the driver's descendants every second; once the driver is gone it terminates those still running
(matched by pid and start time, so a reused pid is never hit) and exits. After a normal
``ray.shutdown`` there is nothing left to terminate.

    python -m logics_rl.controller.reaper DRIVER_PID
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

POLL_S = 1.0
GRACE_S = 3.0


def start(driver_pid: int | None = None) -> subprocess.Popen:
    """The watcher of ``driver_pid`` (default: this process), detached from its session."""
    return subprocess.Popen(
        [sys.executable, "-m", "logics_rl.controller.reaper", str(driver_pid or os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def watch(driver_pid: int, poll_s: float = POLL_S) -> list[int]:
    """Record the driver's descendants until it dies; then terminate them. Returns their pids."""
    import psutil

    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return []
    seen: dict[int, float] = {}
    me = os.getpid()
    while True:
        try:
            for child in driver.children(recursive=True):
                if child.pid != me:
                    seen.setdefault(child.pid, child.create_time())
        except psutil.NoSuchProcess:
            pass
        if not driver.is_running() or driver.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(poll_s)
    left = []
    for pid, created in seen.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                p.terminate()
                left.append(p)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(left, timeout=GRACE_S)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return [p.pid for p in left]


if __name__ == "__main__":
    watch(int(sys.argv[1]))
