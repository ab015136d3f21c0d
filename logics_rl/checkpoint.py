"""Atomic, verified checkpoints with a retention limit.

A checkpoint is written into ``checkpoints/.tmp-step_N``, flushed to disk, given a manifest
(``MANIFEST.json``: the size and SHA-256 of every file, written last), completed with a
``COMPLETE`` marker, then renamed to ``checkpoints/step_N``: a crash while writing leaves the
previous checkpoint the latest complete one. Contents: what the train engine writes (for FSDP2:
model + optimizer shards as safetensors with a JSON index in ``shards/``, ``scheduler.json``,
``hf_config/`` with the model config and tokenizer, and ``engine.json`` naming the engine),
per-rank worker state (``worker_rank<r>.json``: RNG, rollout and actor counters), the trainer
state (``trainer_state.json``: step, data position) and the resolved ``config.yaml``.

Every file is data (JSON, YAML, safetensors, tokenizer files): reading a checkpoint runs no code
from it. Resume and export verify the manifest before opening anything else: a file that differs
(a flipped byte, a planted payload), is missing, or was added is named; resume then sets the
checkpoint aside (``corrupt-step_N``) and falls back to the previous complete one, or stops
(``trainer.on_corrupt_checkpoint``). Before a save the free space is checked against the size of
the last checkpoint; a full disk is reported as such (``DiskFullError``), and
``trainer.prune_before_save`` drops the oldest kept checkpoint first when room is short.

    python -m logics_rl.export runs/x/checkpoints/step_40 out_dir    # a HF model directory
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from typing import Any

from logics_rl.errors import CheckpointCorruptError, CheckpointError, DiskFullError

COMPLETE = "COMPLETE"
MANIFEST = "MANIFEST.json"
CORRUPT_PREFIX = "corrupt-"
_STEP = re.compile(r"^step_(\d+)$")
_OLD = re.compile(r"^\.old-step_(\d+)$")
_MB = 1 << 20


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    """Flush every file of ``root`` (and the directories) to disk before it is marked complete."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            _fsync(os.path.join(dirpath, name))
        _fsync(dirpath)


def read_json(path: str) -> Any:
    """A checkpoint's JSON file; anything else (missing, not JSON) is an error naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not JSON ({exc})") from None


# --------------------------------------------------------------------------- manifest
def _files(root: str) -> list[str]:
    """Every file under ``root`` (relative, ``/``-separated) but the manifest and the marker."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if rel not in (MANIFEST, COMPLETE):
                out.append(rel)
    return out


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 * _MB):
            h.update(block)
    return h.hexdigest()


def write_manifest(root: str) -> int:
    """``MANIFEST.json``: size and SHA-256 of every file of ``root``; returns the total bytes."""
    files = {}
    for rel in _files(root):
        path = os.path.join(root, rel)
        files[rel] = {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}
    with open(os.path.join(root, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump({"algorithm": "sha256", "files": files}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    return sum(f["bytes"] for f in files.values())


def verify(checkpoint: str) -> int:
    """Check every file of ``checkpoint`` against its manifest before anything reads them.

    Raises ``CheckpointCorruptError`` naming the first file that is missing, was added, or
    differs in size or SHA-256. Returns the checkpoint's size in bytes."""
    path = os.path.join(checkpoint, MANIFEST)

    def bad(file: str, reason: str) -> CheckpointCorruptError:
        return CheckpointCorruptError(checkpoint, file, reason)

    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
        listed = manifest["files"]
        if manifest.get("algorithm") != "sha256" or not isinstance(listed, dict):
            raise ValueError("not a sha256 manifest")
        sizes = {rel: int(e["bytes"]) for rel, e in listed.items()}
        digests = {rel: str(e["sha256"]) for rel, e in listed.items()}
    except FileNotFoundError:
        raise bad(MANIFEST, "missing (written by an older version, or not a checkpoint)") from None
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise bad(MANIFEST, f"unreadable ({type(exc).__name__}: {exc})") from None
    present = _files(checkpoint)
    for rel in present:
        if rel not in sizes:
            raise bad(rel, "not in the manifest (added after the checkpoint was written)")
    for rel in sizes:
        if rel not in present:
            raise bad(rel, "missing")
    for rel in sizes:
        size = os.path.getsize(os.path.join(checkpoint, rel))
        if size != sizes[rel]:
            raise bad(rel, f"{size} bytes, the manifest says {sizes[rel]}")
        if file_sha256(os.path.join(checkpoint, rel)) != digests[rel]:
            raise bad(rel, "SHA-256 differs from the manifest (modified or corrupted)")
    return sum(sizes.values())


def _size(checkpoint: str) -> int:
    return sum(os.path.getsize(os.path.join(checkpoint, rel)) for rel in _files(checkpoint))


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it, also inside a worker's error text) is ENOSPC / EDQUOT."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def find_latest(run_dir: str) -> tuple[str, int] | None:
    """The newest complete checkpoint under ``run_dir`` (any stage's ``checkpoints/``) and its
    step, without verifying it; None when there is none."""
    best: tuple[float, str, int] | None = None
    for dirpath, dirs, _ in os.walk(run_dir):
        if os.path.basename(dirpath) != "checkpoints":
            continue
        dirs[:] = []
        for name in dirs_of(dirpath):
            m = _STEP.match(name)
            path = os.path.join(dirpath, name)
            if m and os.path.exists(os.path.join(path, COMPLETE)):
                key = (os.path.getmtime(os.path.join(path, COMPLETE)), path, int(m.group(1)))
                best = key if best is None or key > best else best
    return None if best is None else (best[1], best[2])


def dirs_of(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


class CheckpointManager:
    """``root/step_N`` directories; only those holding the ``COMPLETE`` marker count.

    Re-saving a step that exists (a finished run launched again) moves the old directory aside
    to ``.old-step_N`` before renaming the new one into place, so no moment exists without a
    complete copy of that step: a crash between the two renames leaves ``.old-step_N``, which
    counts until a ``step_N`` exists again.
    """

    def __init__(
        self,
        root: str,
        keep_last: int = 2,
        *,
        prune_before_save: bool = False,
        on_corrupt: str = "fallback",
        warn: Callable[[str], None] = _warn,
    ):
        self.root = root
        self.keep_last = keep_last
        self.prune_before_save = prune_before_save
        self.on_corrupt = on_corrupt
        self.warn = warn
        os.makedirs(root, exist_ok=True)

    def path_of(self, step: int) -> str:
        return os.path.join(self.root, f"step_{step}")

    def complete(self) -> list[tuple[int, str]]:
        """(step, path) of every complete checkpoint, oldest first."""
        found: dict[int, str] = {}
        for name in sorted(os.listdir(self.root), key=lambda n: n.startswith(".old-")):
            m = _STEP.match(name) or _OLD.match(name)
            path = os.path.join(self.root, name)
            if m and os.path.exists(os.path.join(path, COMPLETE)):
                found.setdefault(int(m.group(1)), path)  # step_N before .old-step_N
        return sorted(found.items())

    def latest(self) -> str | None:
        done = self.complete()
        return done[-1][1] if done else None

    def resume_path(self, resume: str) -> str | None:
        """The verified checkpoint ``trainer.resume`` selects: ``never`` none, ``auto`` the
        latest intact one here (none on a fresh run), else the given path, which must be
        complete and intact."""
        if resume == "never":
            return None
        if resume != "auto":
            if not os.path.exists(os.path.join(resume, COMPLETE)):
                raise FileNotFoundError(
                    f"trainer.resume={resume!r} is not a complete checkpoint (no {COMPLETE} "
                    "marker); complete ones are the checkpoints/step_N directories of a run"
                )
            verify(resume)
            return resume
        found = self.complete()
        for _, path in reversed(found):
            try:
                verify(path)
                return path
            except CheckpointCorruptError as exc:
                if self.on_corrupt == "stop":
                    raise CheckpointError(
                        f"{exc}; not resuming (trainer.on_corrupt_checkpoint=stop; 'fallback' "
                        "resumes from the previous complete checkpoint)"
                    ) from None
                aside = self._set_aside(path)
                self.warn(
                    f"checkpoint {path} is corrupt: {exc.file}: {exc.reason}; moved to {aside}, "
                    "trying the previous complete checkpoint"
                )
        if found:
            raise CheckpointError(
                f"no intact checkpoint left in {self.root} (all {len(found)} failed "
                "verification, set aside as corrupt-step_N); trainer.resume=never starts over"
            )
        return None

    def _set_aside(self, path: str) -> str:
        base = os.path.join(self.root, CORRUPT_PREFIX + os.path.basename(path).lstrip("."))
        aside, i = base, 1
        while os.path.exists(aside):
            aside, i = f"{base}.{i}", i + 1
        os.replace(path, aside)
        return aside

    # ------------------------------------------------------------------ saving
    def save(self, step: int, write: Callable[[str], None]) -> str:
        """Check the free space, call ``write(tmp_dir)``, write the manifest, mark the checkpoint
        complete, rename it into place, prune old ones."""
        tmp = os.path.join(self.root, f".tmp-step_{step}")
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        need = self._make_room()
        os.makedirs(tmp)
        try:
            write(tmp)
            _fsync_tree(tmp)
            write_manifest(tmp)
        except BaseException as exc:
            written = _size(tmp) if os.path.isdir(tmp) else 0
            shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint is of no use: free it
            if _disk_full(exc):
                raise DiskFullError(
                    self._full(need or written, during=f"step_{step}", at_least=not need)
                ) from exc
            raise
        with open(os.path.join(tmp, COMPLETE), "w") as fh:
            fh.write(f"{step}\n")
            fh.flush()
            os.fsync(fh.fileno())
        final = self.path_of(step)
        old = os.path.join(self.root, f".old-step_{step}")
        if os.path.exists(final):
            if os.path.exists(old):
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync(self.root)
        self._prune()
        return final

    def _make_room(self) -> int:
        """The next checkpoint's expected size (the last one's; 0 before the first). Raises
        ``DiskFullError`` when the disk lacks it, after pruning first if so configured."""
        last = self.latest()
        if last is None:
            return 0
        need = _size(last)
        if shutil.disk_usage(self.root).free >= need and not self.prune_before_save:
            return need
        if self.prune_before_save and self.keep_last > 0:
            done = self.complete()
            for _, path in done[: max(0, len(done) - (self.keep_last - 1))]:
                if shutil.disk_usage(self.root).free >= need:
                    break
                shutil.rmtree(path, ignore_errors=True)
        if shutil.disk_usage(self.root).free < need:
            raise DiskFullError(self._full(need))
        return need

    def _full(self, need: int, during: str | None = None, at_least: bool = False) -> str:
        free = shutil.disk_usage(self.root).free
        what = f"while writing {during}" if during else "before the next checkpoint"
        last = self.latest()
        kept = f"the last complete checkpoint is {last}" if last else "no complete checkpoint yet"
        hint = (
            "free space there, lower trainer.keep_last"
            f" (now {self.keep_last}), or set trainer.prune_before_save=true (drops the oldest "
            "kept checkpoint before writing the next)"
        )
        if self.prune_before_save:
            hint = "free space there or lower trainer.keep_last"
        if last is None:
            hint = "free space there, or put trainer.run_dir on a larger disk"
        return (
            f"disk full {what}: need {'more than ' if at_least else ''}{need / _MB:.1f} MB at {self.root}, have "
            f"{free / _MB:.1f} MB free; {kept}. To go on: {hint}."
        )

    def _prune(self) -> None:
        """Drop leftovers of interrupted saves, then all but the ``keep_last`` newest."""
        for name in os.listdir(self.root):
            if name.startswith((".tmp-step_", ".old-step_")):
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
        done = self.complete()
        if self.keep_last > 0:
            for _, path in done[: -self.keep_last]:
                shutil.rmtree(path, ignore_errors=True)
