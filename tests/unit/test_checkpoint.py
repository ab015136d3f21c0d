"""``CheckpointManager``: atomic saves, what counts as the latest checkpoint, retention, the
manifest checked on resume and export, and the free-space check before a save.

The write callbacks here write plain files; the trainers' real engine checkpoints go through the
same manager in ``tests/integration/test_rl_trainer.py`` (a crash in the middle of a real save).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from logics_rl.checkpoint import COMPLETE, MANIFEST, CheckpointManager, verify
from logics_rl.controller.errors import WorkerError
from logics_rl.engines.train import export_checkpoint
from logics_rl.errors import CheckpointCorruptError, CheckpointError, DiskFullError


def writer(content: str, fail_after: bool = False):
    def write(tmp: str) -> None:
        os.makedirs(os.path.join(tmp, "dcp"), exist_ok=True)
        with open(os.path.join(tmp, "dcp", "shard.bin"), "w") as fh:
            fh.write(content)
        if fail_after:
            raise OSError("Input/output error")

    return write


def content(path: str) -> str:
    with open(os.path.join(path, "dcp", "shard.bin")) as fh:
        return fh.read()


def test_keep_last_prunes_the_oldest(tmp_path):
    ckpt = CheckpointManager(str(tmp_path), keep_last=2)
    assert ckpt.latest() is None
    for step in (1, 2, 3):
        assert ckpt.save(step, writer(f"s{step}")) == str(tmp_path / f"step_{step}")
    assert sorted(os.listdir(tmp_path)) == ["step_2", "step_3"]
    assert [s for s, _ in ckpt.complete()] == [2, 3]
    assert ckpt.latest() == str(tmp_path / "step_3") and content(ckpt.latest()) == "s3"
    assert (tmp_path / "step_3" / COMPLETE).read_text() == "3\n"
    keep_all = CheckpointManager(str(tmp_path / "all"), keep_last=0)
    for step in (1, 2, 3):
        keep_all.save(step, writer("x"))
    assert [s for s, _ in keep_all.complete()] == [1, 2, 3]


def test_steps_sort_numerically(tmp_path):
    ckpt = CheckpointManager(str(tmp_path), keep_last=2)
    for step in (9, 10):
        ckpt.save(step, writer(str(step)))
    assert ckpt.latest() == str(tmp_path / "step_10")


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path):
    ckpt = CheckpointManager(str(tmp_path), keep_last=1)
    ckpt.save(1, writer("good"))
    with pytest.raises(OSError, match="Input/output"):
        ckpt.save(2, writer("partial", fail_after=True))
    assert ckpt.latest() == str(tmp_path / "step_1") and content(ckpt.latest()) == "good"
    assert os.listdir(tmp_path) == ["step_1"]  # the partial directory is removed, step_1 kept


def test_unmarked_and_leftover_directories_do_not_count(tmp_path):
    """What a killed process leaves behind: a temporary directory, an unmarked step directory."""
    ckpt = CheckpointManager(str(tmp_path), keep_last=2)
    ckpt.save(1, writer("good"))
    writer("killed")(str(tmp_path / ".tmp-step_2"))
    writer("unmarked")(str(tmp_path / "step_3"))
    assert ckpt.latest() == str(tmp_path / "step_1")
    ckpt.save(4, writer("next"))
    assert ckpt.latest() == str(tmp_path / "step_4")
    assert not os.path.exists(tmp_path / ".tmp-step_2")  # the next save clears leftovers
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        export_checkpoint(str(tmp_path / "step_3"), str(tmp_path / "out"))


def test_resaving_a_step_replaces_it_without_a_gap(tmp_path):
    """A finished run launched again saves its final step again."""
    ckpt = CheckpointManager(str(tmp_path), keep_last=1)
    ckpt.save(5, writer("first"))
    ckpt.save(5, writer("second"))
    assert content(ckpt.latest()) == "second" and os.listdir(tmp_path) == ["step_5"]
    # killed between moving the old copy aside and renaming the new one into place
    os.replace(tmp_path / "step_5", tmp_path / ".old-step_5")
    writer("third")(str(tmp_path / ".tmp-step_5"))
    assert ckpt.latest() == str(tmp_path / ".old-step_5") and content(ckpt.latest()) == "second"
    ckpt.save(5, writer("fourth"))
    assert os.listdir(tmp_path) == ["step_5"] and content(ckpt.latest()) == "fourth"


def test_resume_path(tmp_path):
    ckpt = CheckpointManager(str(tmp_path / "checkpoints"))
    assert ckpt.resume_path("auto") is None  # a fresh run
    ckpt.save(3, writer("x"))
    assert ckpt.resume_path("auto") == ckpt.resume_path(ckpt.path_of(3)) == ckpt.path_of(3)
    assert ckpt.resume_path("never") is None
    writer("no marker")(str(tmp_path / "copied"))
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        ckpt.resume_path(str(tmp_path / "copied"))


# --------------------------------------------------------------------------- manifest
def test_the_manifest_names_a_changed_added_or_missing_file(tmp_path):
    ckpt = CheckpointManager(str(tmp_path), keep_last=0)
    path = ckpt.save(1, writer("weights"))
    manifest = json.loads((tmp_path / "step_1" / MANIFEST).read_text())
    assert manifest["files"] == {
        "dcp/shard.bin": {"bytes": 7, "sha256": hashlib.sha256(b"weights").hexdigest()}
    }
    assert verify(path) == 7
    shard = tmp_path / "step_1" / "dcp" / "shard.bin"
    shard.write_bytes(bytes([b"weights"[0] ^ 0xFF]) + b"eights")  # one flipped byte, same size
    with pytest.raises(CheckpointCorruptError, match="dcp/shard.bin: SHA-256 differs"):
        verify(path)
    shard.write_text("weight")
    with pytest.raises(CheckpointCorruptError, match="dcp/shard.bin: 6 bytes, the manifest says 7"):
        verify(path)
    shard.unlink()
    with pytest.raises(CheckpointCorruptError, match="dcp/shard.bin: missing"):
        verify(path)
    shard.write_text("weights")
    (tmp_path / "step_1" / "dcp" / ".metadata").write_bytes(b"\x80\x04N.")
    with pytest.raises(CheckpointCorruptError, match=r"dcp/.metadata: not in the manifest"):
        verify(path)
    (tmp_path / "step_1" / "dcp" / ".metadata").unlink()
    verify(path)
    (tmp_path / "step_1" / MANIFEST).write_bytes(b"\x80\x04N.")  # not JSON: refused, not run
    with pytest.raises(CheckpointCorruptError, match="MANIFEST.json: unreadable"):
        verify(path)
    (tmp_path / "step_1" / MANIFEST).unlink()
    with pytest.raises(CheckpointCorruptError, match="MANIFEST.json: missing"):
        verify(path)


def test_resume_falls_back_past_a_corrupt_checkpoint_or_stops(tmp_path):
    warnings = []
    ckpt = CheckpointManager(str(tmp_path), keep_last=3, warn=warnings.append)
    for step in (1, 2, 3):
        ckpt.save(step, writer(f"s{step}"))
    (tmp_path / "step_3" / "dcp" / "shard.bin").write_text("s9")
    stop = CheckpointManager(str(tmp_path), keep_last=3, on_corrupt="stop")
    with pytest.raises(CheckpointError, match="shard.bin: SHA-256 differs.*on_corrupt_checkpoint"):
        stop.resume_path("auto")
    with pytest.raises(CheckpointCorruptError, match="shard.bin"):
        ckpt.resume_path(str(tmp_path / "step_3"))  # an explicit path is never replaced
    assert ckpt.resume_path("auto") == str(tmp_path / "step_2")
    assert len(warnings) == 1 and "step_3 is corrupt: dcp/shard.bin" in warnings[0]
    assert "corrupt-step_3" in warnings[0]
    assert sorted(os.listdir(tmp_path)) == ["corrupt-step_3", "step_1", "step_2"]  # kept aside
    for step in (1, 2):
        (tmp_path / f"step_{step}" / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="no intact checkpoint left"):
        ckpt.resume_path("auto")


def test_export_verifies_the_checkpoint_first(tmp_path):
    ckpt = CheckpointManager(str(tmp_path), keep_last=1)
    path = ckpt.save(1, writer("x"))
    (tmp_path / "step_1" / "dcp" / "shard.bin").write_text("y")
    with pytest.raises(CheckpointCorruptError, match="shard.bin: SHA-256 differs"):
        export_checkpoint(path, str(tmp_path / "out"))


# --------------------------------------------------------------------------- free space
def fake_disk(monkeypatch, free: list[int]):
    """``shutil.disk_usage`` reporting ``free[0]`` bytes free, plus what pruning released."""
    real = shutil.rmtree

    def rmtree(path, *a, **kw):
        free[0] += sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
        real(path, *a, **kw)

    monkeypatch.setattr("logics_rl.checkpoint.shutil.rmtree", rmtree)
    monkeypatch.setattr(
        "logics_rl.checkpoint.shutil.disk_usage", lambda p: SimpleNamespace(free=free[0])
    )


def test_a_save_without_room_says_disk_full_and_keeps_every_checkpoint(tmp_path, monkeypatch):
    ckpt = CheckpointManager(str(tmp_path), keep_last=2)
    ckpt.save(1, writer("a" * 3000))
    ckpt.save(2, writer("b" * 3000))
    fake_disk(monkeypatch, [1000])
    with pytest.raises(DiskFullError, match=r"need 0.0 MB at .* have 0.0 MB free") as err:
        ckpt.save(3, writer("c" * 3000))
    assert "trainer.prune_before_save=true" in str(err.value) and "step_2" in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ["step_1", "step_2"]


def test_prune_before_save_makes_room_by_dropping_the_oldest(tmp_path, monkeypatch):
    ckpt = CheckpointManager(str(tmp_path), keep_last=2, prune_before_save=True)
    ckpt.save(1, writer("a" * 3000))
    ckpt.save(2, writer("b" * 3000))
    fake_disk(monkeypatch, [1000])
    ckpt.save(3, writer("c" * 3000))
    assert sorted(os.listdir(tmp_path)) == ["step_2", "step_3"]


def test_a_full_disk_during_the_write_is_named(tmp_path):
    """ENOSPC from the writer (here, or in a worker's error text) becomes a DiskFullError."""
    ckpt = CheckpointManager(str(tmp_path), keep_last=1)

    def enospc(tmp: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(DiskFullError, match="disk full while writing step_1: need more than"):
        ckpt.save(1, enospc)

    def worker_error(tmp: str) -> None:
        raise WorkerError(0, "save_checkpoint", "OSError: [Errno 28] No space left on device", "")

    ckpt.save(1, writer("x"))
    with pytest.raises(DiskFullError, match="the last complete checkpoint is .*step_1"):
        ckpt.save(2, worker_error)
    assert os.listdir(tmp_path) == ["step_1"]
