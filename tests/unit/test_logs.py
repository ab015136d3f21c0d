"""The console filter: known benign start-up lines stay off the console but reach run.log;
unknown warnings, errors and tracebacks always reach the console."""

from __future__ import annotations

import io
import os
import sys
import threading

import pytest

from logics_rl.logs import BENIGN, FilteredStream, RunLog, is_benign, run_console, visible

W = "\x1b[36m(HybridWorker pid=25371)\x1b[0m "  # Ray's coloured prefix on a forwarded line
TCMALLOC = (
    W + "(MainProcess pid=25371) WARNING 12-03 00:48:31 [cpu_worker.py:114] libtcmalloc is not "
    "found in LD_PRELOAD. For best performance, please follow the section `set LD_PRELOAD`"
)
NUMA = (
    W + "[rank0]:[W1203 00:48:31.132435896 utils.cpp:68] Warning: NUMA binding: Using MEMBIND "
    "policy for memory allocation on the NUMA nodes (0). (function init_cpu_memory_env)"
)
TOKEN = (
    "2026-12-03 00:47:48,203\tWARNING authentication_token_setup.py:85 -- Token authentication "
    "is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out."
)
FUTURE = (
    W + "/x/vllm/triton_utils/dispatcher.py:138: FutureWarning: `torch.distributed.reduce_op` "
    "is deprecated, please use `torch.distributed.ReduceOp` instead"
)


@pytest.fixture
def filtered(tmp_path):
    log = RunLog(str(tmp_path / "run.log"))
    console = io.StringIO()
    yield FilteredStream(console, log), console, log
    log.close()


def _log_text(log: RunLog) -> str:
    with open(log.path, encoding="utf-8") as fh:
        return fh.read()


@pytest.mark.parametrize(
    "line",
    [
        TCMALLOC,
        NUMA,
        TOKEN,
        W + "Triton is installed, but doesn't include CPU backend. Disabling Triton.",
        W + "(MainProcess pid=1) WARNING [cpu_worker.py:140] CPU backend doesn't allow to use "
        "`torch.set_num_threads` after the thread binding, skip it. [repeated 3x across cluster]",
        W + "(MainProcess pid=1) WARNING [cpu.py:317] Reset SSM cache type to float32 for "
        "accelerated GDN mamba backend 'none'.",
        "(HybridWorker pid=25371) Loading weights: 100%|##########| 24/24 [00:00<00:00, 26.2it/s]",
        "(HybridWorker pid=25371) Loading safetensors checkpoint shards: 100% Completed | 1/1",
        "(HybridWorker pid=25371) ",
    ],
)
def test_benign_lines_go_to_the_log_only(filtered, line):
    stream, console, log = filtered
    stream.write(line + "\n")
    assert console.getvalue() == ""
    assert _log_text(log) == visible(line) + "\n"
    assert "(HybridWorker pid=25371)" in _log_text(log) or line == TOKEN  # prefix kept
    assert log.hidden == 1


@pytest.mark.parametrize(
    "line",
    [
        W + "(MainProcess pid=1) WARNING [foo.py:1] Something new that nobody has seen",
        W + "(MainProcess pid=1) ERROR [cpu_worker.py:114] libtcmalloc is not found in LD_PRELOAD",
        W + "RuntimeError: Triton is installed, but doesn't include CPU backend",
        W + "Traceback (most recent call last):",
        W + "[rank0]:[E1203 00:48:31 utils.cpp:68] NUMA binding: Using MEMBIND policy failed",
        "step 1 mean=-0.14 correct=0.0026 kept_groups=2 step=21.88",
        "",
    ],
)
def test_unknown_warnings_errors_and_tracebacks_pass(filtered, line):
    stream, console, log = filtered
    stream.write(line + "\n")
    assert console.getvalue() == line + "\n"
    assert _log_text(log) == visible(line) + "\n"
    assert log.hidden == 0


def test_a_traceback_passes_whole(filtered):
    stream, console, _ = filtered
    tb = [
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "    torch.set_num_threads(2)",
        "RuntimeError: boom",
    ]
    stream.write(FUTURE + "\n" + "\n".join(W + x for x in tb) + "\n")
    assert console.getvalue() == "".join(W + x + "\n" for x in tb)


def test_the_source_line_of_a_benign_python_warning_goes_with_it(filtered):
    stream, console, log = filtered
    other = "\x1b[36m(SFTWorker pid=7)\x1b[0m "
    stream.write(FUTURE + "\n")
    stream.write(other + "  an indented line of another worker\n")
    stream.write(W + '  if hasattr(value, "__dict__"):\n')
    stream.write(W + "  indented, but not after a benign warning\n")
    assert console.getvalue() == (
        other + "  an indented line of another worker\n"
        "" + W + "  indented, but not after a benign warning\n"
    )
    assert 'if hasattr(value, "__dict__"):' in _log_text(log)
    assert log.hidden == 2


def test_verbose_shows_everything(tmp_path):
    log = RunLog(str(tmp_path / "run.log"))
    console = io.StringIO()
    FilteredStream(console, log, verbose=True).write(TCMALLOC + "\n" + NUMA + "\n")
    log.close()
    assert console.getvalue() == TCMALLOC + "\n" + NUMA + "\n"
    assert _log_text(log).count("\n") == 2


def test_lines_are_assembled_per_thread(filtered):
    """Ray's log thread prints a line and its newline in two writes; a line of the main thread
    in between must not be glued to it (and hidden with it)."""
    stream, console, _ = filtered
    stream.write(TCMALLOC)
    t = threading.Thread(target=stream.write, args=("step 1 mean=0.5\n",))
    t.start()
    t.join()
    stream.write("\n")
    assert console.getvalue() == "step 1 mean=0.5\n"


def test_a_live_progress_bar_keeps_redrawing(filtered):
    """rich's progress bar: a partial line flushed, redrawn after a carriage return; a hidden
    line printed above the bar keeps its cursor codes so the bar is redrawn in place."""
    stream, console, log = filtered
    stream.write("\r\x1b[2Kstep 1/2 ━━━")
    stream.flush()
    assert console.getvalue() == "\r\x1b[2Kstep 1/2 ━━━"
    stream.write("\r\x1b[2K" + TCMALLOC + "\nstep 1/2 ━━━")
    stream.flush()
    stream.write("\r\x1b[2Kstep 1 mean=0.5\n")
    assert console.getvalue() == (
        "\r\x1b[2Kstep 1/2 ━━━" + "\r\x1b[2K" + "step 1/2 ━━━" + "\r\x1b[2Kstep 1 mean=0.5\n"
    )
    assert _log_text(log) == visible(TCMALLOC) + "\nstep 1 mean=0.5\n"
    stream.write("\r\x1b[2Kstep 2/2 ━━━")  # a frame left on screen when the run ends
    stream.flush()
    stream.close_lines()
    assert _log_text(log) == visible(TCMALLOC) + "\nstep 1 mean=0.5\n"


def test_run_console_routes_and_restores_the_streams(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    out, err = sys.stdout, sys.stderr
    with run_console(run_dir) as log:
        print("step 1 mean=0.5")
        print(TCMALLOC, file=sys.stderr)
        print(W + "(MainProcess pid=1) WARNING [foo.py:1] unknown", file=sys.stderr)
    assert (sys.stdout, sys.stderr) == (out, err)
    captured = capsys.readouterr()
    assert "step 1 mean=0.5\n" in captured.out
    assert "1 known start-up messages kept off the console" in captured.out
    assert "unknown" in captured.err and "libtcmalloc" not in captured.err
    with open(os.path.join(run_dir, "run.log"), encoding="utf-8") as fh:
        text = fh.read()
    assert log.path == os.path.join(run_dir, "run.log")
    assert "step 1 mean=0.5" in text and "libtcmalloc" in text and "unknown" in text


def test_every_pattern_compiles_and_names_a_message():
    for p in BENIGN:
        assert len(p) > 15
    assert not is_benign("WARNING something else entirely")


def test_an_exception_leaving_the_run_is_logged(tmp_path):
    run_dir = str(tmp_path / "run")
    with pytest.raises(RuntimeError, match="boom"), run_console(run_dir):
        raise RuntimeError("boom")
    with open(os.path.join(run_dir, "run.log"), encoding="utf-8") as fh:
        text = fh.read()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
