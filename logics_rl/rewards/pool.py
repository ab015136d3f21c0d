"""A persistent pool of Math-Verify worker processes with per-sample hard deadlines.

Why processes: math-verify's timeouts use SIGALRM, which only works in a process's main thread
(in a Ray worker thread it raises "signal only works in main thread", and wrappers that swallowed
that error turned every score into 0), and its ``TimeoutException`` is a ``BaseException``. Each
worker here scores in its own main thread with a SIGALRM deadline per sample
(``_verify_worker``), and the parent enforces a hard wall-clock deadline from outside.

How a call runs (``VerifyPool.score``):
  * unique tasks are cut into chunks; an idle worker gets the next chunk (dynamic load balance);
  * a worker answers after EVERY sample, so the parent knows which sample is in flight and when it
    started: each sample has its own deadline even inside a chunk;
  * the worker's own alarm fires at ``soft_fraction * timeout_s`` (the sample scores 0, status
    ``timeout``, the worker carries on); if the worker has not answered by ``timeout_s`` it is
    killed (SIGKILL) and replaced, the in-flight sample scores 0 with status ``timeout``, and the
    unfinished rest of its chunk goes back to the queue;
  * a worker that dies for another reason (killed by the OOM killer or by hand) is replaced and
    its in-flight sample is retried once; a sample that kills two workers scores 0 (``error``).

Workers are started with ``subprocess`` (fork + immediate exec, safe from a threaded parent)
running ``_verify_worker.py`` by path, not with ``multiprocessing``: plain fork from a threaded
parent is unsafe, and spawn / forkserver re-import the parent's ``__main__`` module in every child
(for ``python -m logics_rl.main`` that is torch: seconds and hundreds of MB per worker). POSIX only
(SIGALRM, fd passing). Pools are started lazily, reused across calls, one per
size, and shut down at interpreter exit (``shutdown_pools``, also callable by hand).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

logger = logging.getLogger(__name__)

WORKER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_verify_worker.py")
# -c puts "" (the cwd) first on sys.path; drop it so a stray math_verify.py there cannot shadow.
_BOOT = "import runpy, sys; del sys.path[0]; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
_RETRIES_AFTER_CRASH = 1


class WorkerStartError(RuntimeError):
    """Worker processes cannot start (math-verify missing or broken): a setup problem, not a sample's."""


def start_worker_process(file: str) -> tuple[subprocess.Popen, Connection]:
    """``python`` running ``file`` as ``__main__`` with one argument, the fd of its end of a
    socket pair; returns the process and the parent's end (``multiprocessing`` messages)."""
    parent, child = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, file, str(child.fileno())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # stderr stays: a crashing worker's traceback is seen
            close_fds=True,
        )
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    return proc, Connection(parent.detach())


@dataclass
class PoolResult:
    scores: list[
        Any
    ]  # a float per sample; a tuple per group task (``_verify_worker.analyse_group``)
    statuses: list[str]  # ok | timeout | error | no_gold (see _verify_worker)
    restarts: int = 0  # workers replaced during the call (killed at the deadline or died)


@dataclass
class _Worker:
    proc: subprocess.Popen
    conn: Connection
    started: float
    state: str = "starting"  # starting | idle | busy
    pid: int | None = None
    chunk: list[int] = field(default_factory=list)  # task indices of the current chunk
    pos: int = 0  # index in chunk of the sample in flight
    since: float = 0.0  # when the sample in flight started (parent clock)


@dataclass
class _Call:
    """The state of one ``score`` call, shared by the scheduler's steps."""

    id: int  # tags the requests, so answers of an interrupted earlier call are ignored
    tasks: Sequence[tuple[Any, Any]]
    opts: dict
    timeout_s: float  # hard per-sample deadline
    soft_s: float | None  # the worker's own alarm
    queue: deque[list[int]]  # chunks of task indices not handed out yet
    scores: list[Any]
    statuses: list[str]
    crashes: list[int]  # workers each task has killed
    remaining: int  # tasks without a score
    restarts: int = 0
    start_failures: int = 0

    def finish(self, i: int, score: Any, status: str) -> None:
        """Settle task ``i`` (counted once, even if settled again)."""
        if self.scores[i] is None:
            self.remaining -= 1
        self.scores[i], self.statuses[i] = score, status

    def result(self) -> PoolResult:
        return PoolResult(list(self.scores), self.statuses, self.restarts)


class VerifyPool:
    """``num_workers`` scoring processes; ``score`` is thread-safe (calls run one at a time)."""

    def __init__(self, num_workers: int, start_timeout_s: float = 120.0):
        if num_workers < 1:
            raise ValueError(f"VerifyPool needs num_workers >= 1, got {num_workers}")
        self.num_workers = num_workers
        self.start_timeout_s = start_timeout_s
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._calls = itertools.count()

    # ------------------------------------------------------------------ process management
    def _spawn(self) -> _Worker:
        proc, conn = start_worker_process(WORKER_FILE)
        return _Worker(proc=proc, conn=conn, started=time.monotonic())

    @staticmethod
    def _kill(w: _Worker) -> None:
        with contextlib.suppress(OSError):
            w.proc.kill()
        try:
            w.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.warning("math-verify worker %s did not exit after SIGKILL", w.proc.pid)
        w.conn.close()

    def _replace(self, w: _Worker) -> _Worker:
        self._kill(w)
        new = self._spawn()
        self._workers[self._workers.index(w)] = new
        return new

    def pids(self) -> list[int]:
        """Process ids of the current workers (for monitoring)."""
        return [w.proc.pid for w in self._workers]

    def close(self, lock_timeout_s: float = 30.0) -> None:
        """Stop the workers (politely, then SIGKILL). The pool restarts lazily if used again.

        Waits up to ``lock_timeout_s`` for a call in another thread to finish, then goes ahead.
        """
        locked = self._lock.acquire(timeout=lock_timeout_s)
        try:
            workers, self._workers = self._workers, []
            for w in workers:
                with contextlib.suppress(OSError):
                    w.conn.send(("stop",))
            deadline = time.monotonic() + 2.0
            for w in workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                self._kill(w)
        finally:
            if locked:
                self._lock.release()

    # ------------------------------------------------------------------ scoring
    def score(
        self,
        tasks: Sequence[tuple[Any, Any]],
        *,
        opts: dict,
        timeout_s: float,
        chunk_size: int = 16,
        soft_fraction: float | None = 0.8,
    ) -> PoolResult:
        """Score ``(gold_candidates, prediction)`` tasks; never raises for a bad sample.

        ``timeout_s`` is the hard per-sample deadline (kill and replace); the worker's own alarm
        fires at ``soft_fraction * timeout_s`` (None: only the hard deadline).
        """
        n = len(tasks)
        if n == 0:
            return PoolResult([], [])
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        with self._lock:
            while len(self._workers) < self.num_workers:
                self._workers.append(self._spawn())
            try:
                return self._run(tasks, opts, timeout_s, max(1, chunk_size), soft_fraction)
            except WorkerStartError:
                for w in self._workers:
                    self._kill(w)
                self._workers = []
                raise
            except BaseException:
                # Interrupted (KeyboardInterrupt, a bug): workers may hold stale work; start over.
                for w in list(self._workers):
                    if w.state != "idle":
                        self._replace(w)
                raise

    def _run(
        self,
        tasks: Sequence[tuple[Any, Any]],
        opts: dict,
        timeout_s: float,
        chunk_size: int,
        soft_fraction: float | None,
    ) -> PoolResult:
        """The scheduler: hand out chunks, read answers, enforce deadlines, until all are scored."""
        n = len(tasks)
        size = min(chunk_size, max(1, -(-n // self.num_workers)))
        call = _Call(
            id=next(self._calls),
            tasks=tasks,
            opts=opts,
            timeout_s=timeout_s,
            soft_s=soft_fraction * timeout_s if soft_fraction else None,
            queue=deque(list(range(i, min(i + size, n))) for i in range(0, n, size)),
            scores=[None] * n,
            statuses=[""] * n,
            crashes=[0] * n,
            remaining=n,
        )
        while call.remaining:
            self._dispatch(call)
            for w in self._wait(call):
                self._read(w, call)
            self._enforce_deadlines(call)
        return call.result()

    def _dispatch(self, call: _Call) -> None:
        """Hand the next chunk to every idle worker (dynamic load balance)."""
        for w in list(self._workers):
            if w.state != "idle" or not call.queue:
                continue
            chunk = call.queue.popleft()
            items = [(i, *call.tasks[i]) for i in chunk]
            try:
                w.conn.send(("score", call.id, items, call.opts, call.soft_s))
            except OSError:  # died while idle
                call.queue.appendleft(chunk)
                call.restarts += 1
                self._replace(w)
                continue
            w.state, w.chunk, w.pos, w.since = "busy", chunk, 0, time.monotonic()

    def _wait(self, call: _Call) -> list[_Worker]:
        """Block until a worker has something to say or the nearest deadline; those that spoke."""
        active = [w for w in self._workers if w.state != "idle"]
        if not active:
            raise RuntimeError(
                "math-verify pool: work remains but no worker is active (this is a bug)"
            )
        due = min(
            w.since + call.timeout_s if w.state == "busy" else w.started + self.start_timeout_s
            for w in active
        )
        ready = wait([w.conn for w in active], timeout=max(0.0, due - time.monotonic()))
        return [w for w in active if w.conn in ready]

    def _read(self, w: _Worker, call: _Call) -> None:
        """Handle every message ``w`` has sent; a broken connection means it died."""
        try:
            while w.conn.poll():
                self._handle(w, w.conn.recv(), call)
        except (EOFError, OSError) as exc:
            if w.state == "starting":
                self._failed_start(w, call, f"exited with {w.proc.poll()}")
            elif w.state == "busy":
                logger.warning("math-verify worker %s died (%s); replacing it", w.proc.pid, exc)
                self._lost(w, call, timed_out=False)
            else:
                call.restarts += 1
                self._replace(w)

    def _handle(self, w: _Worker, msg: tuple, call: _Call) -> None:
        """One message: ready, fatal (cannot start), or one sample's result."""
        if msg[0] == "ready":
            w.state, w.pid = "idle", msg[1]
        elif msg[0] == "fatal":
            self._kill(w)
            raise WorkerStartError(f"math-verify worker cannot start:\n{msg[1]}")
        elif msg[1] != call.id:
            return  # stale answer of an interrupted earlier call
        elif msg[0] == "res":
            _, _, i, score, status = msg
            if w.state != "busy" or w.pos >= len(w.chunk) or w.chunk[w.pos] != i:
                raise OSError(f"unexpected answer for task {i}")
            call.finish(i, score, status)
            w.pos += 1
            w.since = time.monotonic()
            if w.pos == len(w.chunk):  # the worker is back in recv()
                w.state, w.chunk, w.pos = "idle", [], 0

    def _enforce_deadlines(self, call: _Call) -> None:
        """Kill a worker whose sample is over its deadline; give up on one that will not start."""
        now = time.monotonic()
        for w in list(self._workers):
            if w.state == "busy" and now >= w.since + call.timeout_s:
                logger.warning(
                    "math-verify sample over its %.1fs deadline; killing worker %s",
                    call.timeout_s,
                    w.proc.pid,
                )
                self._lost(w, call, timed_out=True)
            elif w.state == "starting" and now >= w.started + self.start_timeout_s:
                self._failed_start(w, call, f"no answer within {self.start_timeout_s:.0f}s")

    def _lost(self, w: _Worker, call: _Call, timed_out: bool) -> None:
        """A busy worker was killed at the deadline or died: settle its in-flight sample.

        A timed-out sample scores 0; a crashed one is retried once (it may not be its fault),
        then scores 0 as an error. The rest of the chunk goes back to the queue.
        """
        call.restarts += 1
        i, rest = w.chunk[w.pos], w.chunk[w.pos + 1 :]
        if rest:
            call.queue.appendleft(rest)
        if timed_out:
            call.finish(i, 0.0, "timeout")
        else:
            call.crashes[i] += 1
            if call.crashes[i] > _RETRIES_AFTER_CRASH:
                call.finish(i, 0.0, "error")
            else:
                call.queue.appendleft([i])
        self._replace(w)

    def _failed_start(self, w: _Worker, call: _Call, why: str) -> None:
        """Replace a worker that did not start; too many failures is a setup problem."""
        call.start_failures += 1
        if call.start_failures > 3 * self.num_workers:
            raise WorkerStartError(
                f"math-verify worker processes keep failing to start ({why}); see their stderr above"
            )
        self._replace(w)


# --------------------------------------------------------------------------- shared pools
_POOLS: dict[int, VerifyPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(num_workers: int) -> VerifyPool:
    """The shared pool with ``num_workers`` processes (created on first use, started lazily)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(num_workers)
        if pool is None:
            pool = _POOLS[num_workers] = VerifyPool(num_workers)
        return pool


def shutdown_pools() -> None:
    """Stop every shared pool's workers (registered with ``atexit``; safe to call any time)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def _forget_after_fork() -> None:
    # A forked child must not drive (or kill) its parent's workers: it starts its own if needed.
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


atexit.register(shutdown_pools)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
