"""Shared helpers for the benchmarks: a one-process torch.distributed world, peak RSS, tables."""

from __future__ import annotations

import os
import platform
import resource
import threading
import time


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPUs ({cpu}), {gpu}, Python {platform.python_version()}, torch {torch.__version__}"


def single_process_world() -> None:
    import torch.distributed as dist

    from logics_rl.controller.worker import free_port

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        dist.init_process_group("gloo", rank=0, world_size=1)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MachineCpu:
    """How many of the machine's cores were busy, from ``/proc/stat`` read every ``every_s`` in a
    thread: ``cores(t0, t1)`` for any wall-clock window (``time.time()``) inside the sampling.
    On a quiet machine it says whether a step left cores idle (more workers could help) or kept
    them all busy (more workers cannot, on this machine)."""

    def __init__(self, every_s: float = 0.5):
        with open("/proc/stat") as fh:  # the CPUs the kernel counts in its aggregate line
            self.ncpu = sum(1 for line in fh if line[:3] == "cpu" and line[3].isdigit())
        self.every_s, self.samples = every_s, [self._read()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def _read() -> tuple[float, int, int]:
        with open("/proc/stat") as fh:
            ticks = [int(x) for x in fh.readline().split()[1:]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return time.time(), sum(ticks) - idle, sum(ticks)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(self._read())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self._read())

    def cores(self, t0: float, t1: float) -> float:
        """Mean busy cores between the samples nearest to ``t0`` and ``t1``."""
        a = min(self.samples, key=lambda s: abs(s[0] - t0))
        b = min(self.samples, key=lambda s: abs(s[0] - t1))
        if b[2] <= a[2]:
            return float("nan")
        return self.ncpu * (b[1] - a[1]) / (b[2] - a[2])


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def today() -> str:
    return time.strftime("%Y-%m-%d")


def model_path(name: str) -> str:
    """``smollm2`` (converted offline), ``tiny`` (built in a temp dir) or a HF directory."""
    if name == "smollm2":
        from logics_rl.models.smollm2 import convert_smollm2

        return convert_smollm2()
    if name == "tiny":
        import tempfile

        from logics_rl.models.tiny import build_tiny_qwen3

        return build_tiny_qwen3(tempfile.mkdtemp())
    return name


class TreeSampler:
    """Peak memory of a process and all its descendants, sampled in a thread every ``every_s``:
    the sum of RSS (pages shared between processes counted in each) and of PSS (counted once).

    RSS is cheap to read; PSS is not: the kernel walks the page tables of every process for it
    (about 0.15 s for a 10 GB vLLM worker) while holding the process's memory-map lock, which
    stalls its large allocations. Sampling PSS every second took 17 % of a core on a 2-core
    machine and slowed the measured run. So PSS is read when the tree's RSS reaches a new peak
    (more than 1 % above the last one at which PSS was read) and otherwise at most every
    ``pss_every_s``."""

    def __init__(self, pid: int, every_s: float = 0.2, pss: bool = True, pss_every_s: float = 15):
        import psutil

        self.root, self.every_s, self.pss = psutil.Process(pid), every_s, pss
        self.pss_every_s, self._pss_at, self._pss_rss = pss_every_s, -1e9, 0.0
        self.peak_rss_mb = self.peak_pss_mb = 0.0
        self.peak_procs = self.samples = self.pss_samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self, force_pss: bool = False) -> None:
        import psutil

        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        rss = 0
        for p in procs:
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                continue
        self.samples += 1
        self.peak_procs = max(self.peak_procs, len(procs))
        self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)
        now = time.monotonic()
        due = now - self._pss_at >= self.pss_every_s or rss > 1.01 * self._pss_rss
        if self.pss and (due or force_pss):
            pss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                    pss += getattr(info, "pss", info.rss)
                except psutil.Error:
                    continue
            self._pss_at, self._pss_rss = now, max(self._pss_rss, rss)
            self.pss_samples += 1
            self.peak_pss_mb = max(self.peak_pss_mb, pss / 2**20)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_s)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample(force_pss=True)  # what is still there at the end (a callable's result)
        out = {"peak_rss_mb": self.peak_rss_mb, "peak_procs": self.peak_procs}
        if self.pss:
            out["peak_pss_mb"] = self.peak_pss_mb
        return {**out, "samples": self.samples}
