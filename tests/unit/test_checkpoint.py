"""``CheckpointManager``: atomic saves, what counts as the latest checkpoint, retention.

The write callbacks here write plain files; the trainers' real engine checkpoints go through the
same manager in ``tests/integration/test_rl_trainer.py`` (a crash in the middle of a real save).
"""

from __future__ import annotations

import os

import pytest

from logics_rl.checkpoint import COMPLETE, CheckpointManager
from logics_rl.engines.train import export_checkpoint


def writer(content: str, fail_after: bool = False):
    def write(tmp: str) -> None:
        os.makedirs(os.path.join(tmp, "dcp"))
        with open(os.path.join(tmp, "dcp", "shard.bin"), "w") as fh:
            fh.write(content)
        if fail_after:
            raise OSError("No space left on device")

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
    with pytest.raises(OSError, match="No space"):
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
