"""What a run prints: the console, and ``<run_dir>/run.log``.

The console shows the run (config, progress bar, metrics, phase times, the report) and every
warning or error that matters. Known, harmless start-up messages of vLLM's CPU backend, torch
and Ray (``BENIGN`` below) are kept off the console; ``run.log`` receives every line, those
included, with Ray's ``(Worker pid=...)`` prefix. ``--verbose`` (or ``LOGICS_RL_VERBOSE=1``)
shows everything on the console as well.

Mechanism: one filter on the driver's ``sys.stdout`` / ``sys.stderr``. Ray forwards each worker
process's stdout / stderr (Python logging, ``warnings``, prints, and C++ output alike) to the
driver, which prints the lines to ``sys.stdout`` / ``sys.stderr`` looked up at print time; Ray's
own driver logger also writes to the ``sys.stderr`` of the moment. So every message arrives at
this one place, whatever its origin, and the workers need no set-up of their own. Lines written
straight to file descriptor 1 / 2 of the driver process (C++ code in the driver) pass unseen:
neither filtered nor logged.

Never hidden, whatever the list says: tracebacks, anything at ERROR / CRITICAL / FATAL level,
``SomethingError:`` / ``SomethingException:`` lines and C++ error / fatal log lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import IO, Any

LOG_NAME = "run.log"
VERBOSE_ENV = "LOGICS_RL_VERBOSE"  # "1": same as --verbose

# Known benign messages, searched for in the line (colour codes and Ray's prefix removed).
BENIGN: tuple[str, ...] = (
    # Ray (driver): the local cluster it starts made its own token; an opt-out notice, no action.
    r"Token authentication is enabled for this Ray cluster",
    # torch / vLLM: Triton has no CPU backend; the CPU build uses its own C++ kernels instead.
    r"Triton is installed, but doesn't include CPU backend",
    r"Triton is not installed\. triton-cpu is expected",
    # vLLM: without Triton it picks its V1 model runner, the one the CPU backend supports.
    r"Model Runner V2 requires Triton",
    # vLLM: allocator preload hints (tcmalloc, Intel OpenMP); glibc malloc / GNU OpenMP work.
    r"(libtcmalloc|libiomp) is not found in LD_PRELOAD",
    # torch (C++): vLLM binds its memory to the NUMA node of its threads; informational.
    r"NUMA binding: Using MEMBIND policy",
    # vLLM: a container whose NUMA info is incomplete; it falls back to a visible memory node.
    r"is not in available memory nodes|is not a valid memory node\. Falling back",
    # vLLM: after binding threads it ignores torch.set_num_threads; the binding stays as set.
    r"CPU backend doesn't allow to use `torch\.set_num_threads`",
    # vLLM: OMP_NUM_THREADS (Ray sets it to the worker's CPUs) is respected, as intended.
    r"OMP_NUM_THREADS=\d+ is set; leaving Torch threads at",
    # vLLM: the SSM (Mamba) state cache dtype; the models here have no SSM layers.
    r"Reset SSM cache type to float32",
    # vLLM: seeding note for in-process engines; in-process is by design (WORKER_ENV), and the
    # trainer seeds every worker itself.
    r"The global random seed is set to \d+\. Since VLLM_ENABLE_V1_MULTIPROCESSING",
    # vLLM: eager mode is what the CPU rollout engine asks for; no torch.compile, no graphs.
    r"Enforce eager set, disabling torch\.compile",
    r"Inductor compilation was disabled by user settings",
    # vLLM's triton_utils touches a deprecated torch.distributed alias (its source line follows).
    r"FutureWarning: `torch\.distributed\.reduce_op` is deprecated",
    # megatron-core: without Transformer Engine / Apex it uses its torch implementations, which
    # is what the Megatron engine's local layer spec asks for (no fused kernels on CPU).
    r"(Transformer Engine and )?Apex (is|are) not installed\. Falling back to (Torch|local)",
    # megatron-core: its own TransformerConfig default (cuda_graph_scope) triggers the notice;
    # the engine captures no CUDA graphs.
    r"full scope is deprecated\. Use empty cuda_graph_scope",
    # Weight-loading progress bars of transformers and vLLM when a worker loads its engines
    # (one per engine start; a failed load raises, and its error passes).
    r"^(?:\([^()]*pid=[^()]*\) )?Loading (?:weights|safetensors checkpoint shards):",
    r"^\([^()]*pid=[^()]*\) $",  # the empty line vLLM's loading bar ends with
)
BENIGN_RE = re.compile("|".join(f"(?:{p})" for p in BENIGN))

# Never filtered, even when a benign pattern matches too.
NEVER_HIDDEN = re.compile(
    r"Traceback \(most recent call last\)"
    r"|\b(?:ERROR|CRITICAL|FATAL)\b"
    r"|\b\w*(?:Error|Exception)\b:"
    r"|\b[EF]\d{4} \d\d:\d\d:\d\d"  # C++ (glog / c10) error and fatal lines: "[E1203 00:48:31"
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CURSOR = re.compile(r"\x1b\[[0-9;?]*[A-Za-ln-z]|\r")  # ANSI codes that move / erase, not colour
# Ray's prefix on a forwarded worker line: "(HybridWorker pid=123)" or "(pid=123, ip=10.0.0.2)".
RAY_PREFIX = re.compile(r"^\((?P<src>[^()]*pid=[^()]*)\) ")
# A line of Python's ``warnings`` output ("file.py:12: FutureWarning: ..."); the source line
# shown under it is indented.
WARNING_LINE = re.compile(r"^\S.*:\d+: \w*Warning: ")


def visible(line: str) -> str:
    """The text a terminal leaves of ``line``: colour / cursor codes removed, and what a
    carriage return overwrote dropped (Ray's prefix kept)."""
    text = ANSI.sub("", line).rstrip("\r")
    if "\r" in text:
        m = RAY_PREFIX.match(text)
        text = (m.group(0) if m else "") + text.rsplit("\r", 1)[1]
    return text


def is_benign(text: str) -> bool:
    """Whether a visible line is a known harmless message (and no error)."""
    return not NEVER_HIDDEN.search(text) and BENIGN_RE.search(text) is not None


class RunLog:
    """``run.log``: every line, as the terminal would show it, appended."""

    def __init__(self, path: str):
        self.path = path
        self._fh = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self.lock = threading.RLock()
        self.hidden = 0  # lines kept off the console

    def write_line(self, text: str) -> None:
        with self.lock:
            if not self._fh.closed:
                self._fh.write(text + "\n")

    def close(self) -> None:
        with self.lock:
            self._fh.close()


class FilteredStream:
    """A text stream in front of ``stream`` (the console): every complete line goes to the run
    log, and to ``stream`` unless it is benign (``verbose``: always).

    Lines are assembled per thread, so that Ray's log thread and the main thread cannot splice
    their lines. A partial line that is flushed (a progress bar redrawn in place) passes at once.
    """

    def __init__(self, stream: IO[str], log: RunLog, verbose: bool = False):
        self.stream, self.log, self.verbose = stream, log, verbose
        # per thread (the object: an ident is reused): the current line so far, and how much of
        # it the console has
        self._line: dict[threading.Thread, str] = {}
        self._sent: dict[threading.Thread, int] = {}
        self._continuation: set[str] = set()  # sources whose next indented line is dropped

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, ...
        return getattr(self.stream, name)

    def write(self, s: str) -> int:
        with self.log.lock:
            thread = threading.current_thread()
            line, sent = self._line.get(thread, ""), self._sent.get(thread, 0)
            *complete, rest = (line + s).split("\n")
            out = []
            for full in complete:
                out.append(self._decide(full, full[sent:]))
                sent = 0
            if rest:
                self._line[thread], self._sent[thread] = rest, sent
            else:
                self._line.pop(thread, None)
                self._sent.pop(thread, None)
            self._emit("".join(out))
        return len(s)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self.log.lock:
            thread = threading.current_thread()
            line, sent = self._line.get(thread, ""), self._sent.get(thread, 0)
            if len(line) > sent:
                self._emit(line[sent:])
                # the console has it all; what a carriage return overwrote is not kept for the log
                keep = line[line.rfind("\r") + 1 :]
                self._line[thread], self._sent[thread] = keep, len(keep)
            self.stream.flush()

    def close_lines(self) -> None:
        """End every pending line (at exit). One the console already has whole was a progress
        bar drawn in place and never finished: a stale frame, not logged."""
        with self.log.lock:
            for thread in list(self._line):
                line, sent = self._line.pop(thread), self._sent.pop(thread, 0)
                if len(line) > sent:
                    self._emit(self._decide(line, line[sent:]))

    def _decide(self, full: str, unsent: str) -> str:
        """Log ``full``; return what the console gets of its unsent part (with the newline)."""
        text = visible(full)
        self.log.write_line(text)
        m = RAY_PREFIX.match(text)
        source, body = (m.group("src"), text[m.end() :]) if m else ("", text)
        hide = False
        if source in self._continuation:
            self._continuation.discard(source)
            hide = body[:1].isspace() and not NEVER_HIDDEN.search(body)
        if not hide and is_benign(text):
            hide = True
            if WARNING_LINE.match(body):
                self._continuation.add(source)
        if not hide or self.verbose:
            return unsent + "\n"
        self.log.hidden += 1
        # keep the cursor movements (a live progress bar redraws over this line), drop the rest
        return "".join(CURSOR.findall(unsent))

    def _emit(self, s: str) -> None:
        if s:
            self.stream.write(s)


def verbose_from_env() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def run_console(run_dir: str, verbose: bool = False) -> Iterator[RunLog]:
    """Route ``sys.stdout`` / ``sys.stderr`` through the filter, and every line into
    ``<run_dir>/run.log``, for the duration of the block."""
    os.makedirs(run_dir, exist_ok=True)
    log = RunLog(os.path.join(run_dir, LOG_NAME))
    log.write_line(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}")
    old_out, old_err = sys.stdout, sys.stderr
    out, err = FilteredStream(old_out, log, verbose), FilteredStream(old_err, log, verbose)
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        yield log
    except BaseException:
        log.write_line(traceback.format_exc().rstrip("\n"))  # Python prints it on the console
        raise
    finally:
        for s in (out, err):
            s.close_lines()
            with contextlib.suppress(Exception):
                s.stream.flush()
        sys.stdout, sys.stderr = old_out, old_err
        if log.hidden:
            print(
                f"{log.hidden} known start-up messages kept off the console: see {log.path}"
                " (--verbose shows them)",
                file=old_out,
            )
        log.close()
