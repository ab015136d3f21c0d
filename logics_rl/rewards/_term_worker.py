"""One isolated reward term, run in its own process (``logics_rl.rewards.isolated``).

Started as ``python -c BOOT _term_worker.py FD``; talks over the socket FD with
``multiprocessing.connection`` messages:

    parent -> ("load", sys_path, module, qualname)   child -> ("ready", pid) | ("fatal", traceback)
    parent -> ("call", id, batch, params)            child -> ("ok", id, result) | ("error", id, traceback)
    parent -> ("stop",)

The parent owns every deadline: a term that never returns is SIGKILLed from outside and this
process is started again for the next batch.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
from typing import Any

_MAX_TRACEBACK = 8_000  # characters of a term's traceback sent back (a 1 MB message is cut)


def _short_traceback() -> str:
    text = traceback.format_exc()
    if len(text) > _MAX_TRACEBACK:
        text = text[: _MAX_TRACEBACK // 2] + "\n[... cut ...]\n" + text[-_MAX_TRACEBACK // 2 :]
    return text


def _load(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def main(fd: int) -> None:
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    try:
        _, sys_path, module, qualname = conn.recv()
        sys.path[:] = sys_path
        fn = _load(module, qualname)
    except BaseException:
        conn.send(("fatal", _short_traceback()))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if msg[0] == "stop":
            return
        _, call_id, batch, params = msg
        try:
            out = fn(batch, **params)
        except Exception:
            reply = ("error", call_id, _short_traceback())
        else:
            reply = ("ok", call_id, out)
        try:
            conn.send(reply)
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception:  # the result does not pickle
            conn.send(("error", call_id, _short_traceback()))


if __name__ == "__main__":
    main(int(sys.argv[1]))
