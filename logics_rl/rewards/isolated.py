"""A reward term run in its own process, with a hard deadline per batch.

A plugin that hangs (a network call without a timeout, an infinite loop), that crashes the
interpreter (``os.abort``, a segfault in a C extension) or that the OOM killer takes cannot be
stopped or survived inside the driver. ``IsolatedTerm`` runs it in a child process
(``_term_worker.py``, started like the math-verify workers: fork + exec, no ``multiprocessing``
re-import of ``__main__``) and:

  * waits at most ``timeout_s`` for a batch; then SIGKILLs the child -> ``TermFailure("timeout")``;
  * a child that dies on a batch -> ``TermFailure("crash")`` naming the signal or exit code;
  * an exception in the term -> ``TermFailure("error")`` with the child's traceback (cut to 8 kB).

The child is started on the first call and again after a timeout or crash, so one bad batch
does not disable the term. Terms are loaded in the child by ``module:qualname`` with the
parent's ``sys.path``: only functions importable that way can be isolated (``importable_path``).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection
from typing import Any

from logics_rl.rewards.pool import start_worker_process

logger = logging.getLogger(__name__)

WORKER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_term_worker.py")
_LIVE: weakref.WeakSet[IsolatedTerm] = weakref.WeakSet()


class TermFailure(Exception):
    """An isolated term gave no usable result for a batch; ``kind``: timeout | crash | error."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def importable_path(fn: Any) -> str | None:
    """``module:qualname`` a child process can import ``fn`` by, or None (a ``__main__`` or
    locally defined function, a callable object)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def _exit_reason(returncode: int | None) -> str:
    if returncode is None:
        return "its process stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"its process died of {name}"
    return f"its process exited with code {returncode}"


class IsolatedTerm:
    """``term(batch, params, timeout_s)`` runs the plugin at ``path`` in a child process."""

    def __init__(self, path: str, label: str, start_timeout_s: float = 120.0):
        self.path, self.label = path, label
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._calls = itertools.count()
        self._lock = threading.Lock()
        _LIVE.add(self)

    def __repr__(self) -> str:
        pid = self._proc.pid if self._proc is not None else None
        return f"IsolatedTerm({self.label!r}, {self.path!r}, pid={pid})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        proc, conn = start_worker_process(WORKER_FILE)
        self._proc, self._conn = proc, conn
        module, qualname = self.path.split(":", 1)
        try:
            conn.send(("load", list(sys.path), module, qualname))
            if not conn.poll(self.start_timeout_s):
                raise TermFailure("crash", f"did not load within {self.start_timeout_s:.0f} s")
            msg = conn.recv()
        except (EOFError, OSError):
            self._stop()
            raise TermFailure("crash", f"could not start: {_exit_reason(proc.wait())}") from None
        except BaseException:
            self._stop()
            raise
        if msg[0] != "ready":
            self._stop()
            raise TermFailure("crash", f"could not load {self.path}:\n{msg[1]}")

    def _stop(self) -> None:
        proc, conn, self._proc, self._conn = self._proc, self._conn, None, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        if conn is not None:
            conn.close()

    def __call__(self, batch: Any, params: dict, timeout_s: float) -> Any:
        with self._lock:
            if self._proc is None:
                self._start()
            assert self._conn is not None and self._proc is not None
            call_id = next(self._calls)
            t0 = time.monotonic()
            try:
                self._conn.send(("call", call_id, batch, params))
                while True:
                    left = timeout_s - (time.monotonic() - t0)
                    if left <= 0 or not self._conn.poll(left):
                        pid = self._proc.pid
                        self._stop()
                        raise TermFailure(
                            "timeout",
                            f"no result within {timeout_s:g} s; its process (pid {pid}) was "
                            "killed and starts again for the next batch",
                        )
                    msg = self._conn.recv()
                    if msg[1] == call_id:
                        break
            except (EOFError, OSError):
                code = None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = self._proc.wait(timeout=10)
                self._stop()
                raise TermFailure(
                    "crash", f"{_exit_reason(code)} on this batch; it starts again for the next"
                ) from None
            if msg[0] == "error":
                raise TermFailure("error", f"raised in its process:\n{msg[2]}")
            return msg[2]

    def close(self) -> None:
        """Stop the child (politely, then SIGKILL); a later call starts it again."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(("stop",))
                if self._proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(timeout=2)
            self._stop()


@atexit.register
def _close_all() -> None:
    for term in list(_LIVE):
        term.close()
