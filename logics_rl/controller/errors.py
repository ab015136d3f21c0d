"""Errors a worker group call raises on the driver; each names the method and the rank(s)."""

from __future__ import annotations


class WorkerGroupError(RuntimeError):
    """Base class of worker group failures."""


class WorkerError(WorkerGroupError):
    """A method raised inside a worker; carries the worker's rank and formatted traceback."""

    def __init__(self, rank: int, method: str, error: str, traceback: str):
        self.rank = rank
        self.method = method
        self.error = error
        self.traceback = traceback
        super().__init__(rank, method, error, traceback)

    def __str__(self) -> str:
        return f"worker rank {self.rank} failed in {self.method}(): {self.error}\n{self.traceback}"

    def __reduce__(self):  # keep the fields through pickling (Ray ships exceptions)
        return (WorkerError, (self.rank, self.method, self.error, self.traceback))


class WorkerDiedError(WorkerGroupError):
    """A worker process died (killed, crashed, out of memory) during or before a call."""

    def __init__(self, rank: int, method: str, detail: str = "", pid: int | None = None):
        self.rank = rank
        self.method = method
        self.detail = detail
        self.pid = pid
        super().__init__(rank, method, detail, pid)

    def __str__(self) -> str:
        pid = f" (pid {self.pid})" if self.pid else ""
        head = f"worker rank {self.rank}{pid} died while running {self.method}()"
        return f"{head}: {self.detail}" if self.detail else head

    def __reduce__(self):
        return (WorkerDiedError, (self.rank, self.method, self.detail, self.pid))


class WorkerTimeoutError(WorkerGroupError):
    """A call did not finish within its timeout; names the ranks still running."""

    def __init__(
        self,
        method: str,
        timeout_s: float,
        pending_ranks: list[int],
        hint: str = "raise cluster.call_timeout_s if the work is legitimately long",
        states: str = "",
    ):
        self.method = method
        self.timeout_s = timeout_s
        self.pending_ranks = pending_ranks
        self.hint = hint
        self.states = states
        super().__init__(method, timeout_s, pending_ranks, hint, states)

    def __str__(self) -> str:
        states = f"; {self.states}" if self.states else ""
        return (
            f"{self.method}() did not finish within {self.timeout_s:g} s on ranks "
            f"{self.pending_ranks}{states} ({self.hint})"
        )

    def __reduce__(self):
        return (
            WorkerTimeoutError,
            (self.method, self.timeout_s, self.pending_ranks, self.hint, self.states),
        )
