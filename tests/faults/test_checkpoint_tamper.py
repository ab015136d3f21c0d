"""A checkpoint cannot run code or lie (real checkpoints of real SFT and GRPO runs: Ray, FSDP2).

Every file of a checkpoint, found by walking the directory, is in turn
- replaced by a pickle whose unpickling would create a marker file,
- given one flipped byte;
resume selection (``trainer.resume=auto``) then refuses it naming the file and falls back to
the previous checkpoint, export refuses it naming the file, and the marker never appears.
With the manifest forged to match the planted payload (someone who can rewrite the whole
checkpoint), the readers themselves (the engine's load, the trainer state, export) are run on
each planted file in a separate process: they raise, naming the file, and run nothing.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest

from logics_rl.checkpoint import COMPLETE, MANIFEST, CheckpointManager, write_manifest
from logics_rl.engines.train import export_checkpoint
from logics_rl.errors import CheckpointCorruptError

pytestmark = pytest.mark.faults


class Payload:
    """Unpickling it runs a shell command that creates ``path``."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture(scope="module", params=["sft", "rl"])
def checkpoints(request, sft_recipe, rl_recipe, main_run, tmp_path_factory) -> str:
    run_dir = str(tmp_path_factory.mktemp(f"tamper_{request.param}"))
    recipe = sft_recipe if request.param == "sft" else rl_recipe
    code, out, _ = main_run(recipe, run_dir)
    assert code == 0, out[-3000:]
    root = os.path.join(run_dir, "checkpoints")
    assert sorted(os.listdir(root)) == ["step_1", "step_2"]
    return root


def files_of(checkpoint: str) -> list[str]:
    """Every file of the checkpoint but the completion marker (whose content nothing reads)."""
    out = []
    for dirpath, _, names in os.walk(checkpoint):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), checkpoint)
            if rel != COMPLETE:
                out.append(rel)
    return sorted(out)


def test_the_checkpoint_holds_no_pickle(checkpoints):
    files = files_of(os.path.join(checkpoints, "step_2"))
    assert "shards/index.json" in files and "shards/rank00000.safetensors" in files
    assert MANIFEST in files and "trainer_state.json" in files
    rl = "worker_rank0.json" in files
    assert rl == ("tamper_rl" in checkpoints)  # the RL workers' RNG and counters
    for rel in files:
        with open(os.path.join(checkpoints, "step_2", rel), "rb") as fh:
            assert not fh.read(2).startswith(b"\x80"), rel  # no pickle protocol header
        assert not rel.endswith((".pt", ".pth", ".pkl", ".bin", ".distcp", ".metadata")), rel


def tamper(checkpoints: str, tmp_path, rel: str, how: str) -> tuple[str, str]:
    """A copy of the checkpoints with ``step_2/rel`` tampered; (copy root, marker path)."""
    root = str(tmp_path / f"ckpt_{how}_{rel.replace('/', '_')}")
    shutil.copytree(checkpoints, root)
    path = os.path.join(root, "step_2", rel)
    marker = str(tmp_path / f"ran_{how}_{rel.replace('/', '_')}")
    if how == "payload":
        with open(path, "wb") as fh:
            pickle.dump(Payload(marker), fh)
    else:
        with open(path, "rb") as fh:
            data = bytearray(fh.read())
        data[len(data) // 2] ^= 0xFF
        with open(path, "wb") as fh:
            fh.write(bytes(data))
    return root, marker


@pytest.mark.parametrize("how", ["payload", "flipped byte"])
def test_resume_and_export_refuse_a_tampered_file_by_name(checkpoints, tmp_path, how):
    files = files_of(os.path.join(checkpoints, "step_2"))
    for rel in files:
        root, marker = tamper(checkpoints, tmp_path, rel, how)
        warnings: list[str] = []
        ckpt = CheckpointManager(root, keep_last=2, warn=warnings.append)
        assert ckpt.resume_path("auto") == os.path.join(root, "step_1"), rel
        assert len(warnings) == 1 and f"step_2 is corrupt: {rel}:" in warnings[0], warnings
        aside = os.path.join(root, "corrupt-step_2")
        with pytest.raises(CheckpointCorruptError) as err:
            export_checkpoint(aside, os.path.join(root, "out"))
        assert err.value.file == rel
        assert not os.path.exists(marker), rel
        assert not os.path.exists(os.path.join(root, "out")), rel


READERS = """
import json, os, sys, traceback
import torch.distributed as dist
from logics_rl.checkpoint import read_json
from logics_rl.config.schema import TrainEngineConfig
from logics_rl.engines.train import build_train_engine, export_checkpoint

model, cases = sys.argv[1], json.loads(sys.argv[2])
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[3])
dist.init_process_group("gloo", rank=0, world_size=1)
engine = build_train_engine(TrainEngineConfig(), model, total_steps=10)
out = {}
for rel, ckpt in cases:
    errors = []
    for name, read in [
        ("engine", lambda: engine.load_checkpoint(ckpt)),
        ("trainer_state", lambda: read_json(os.path.join(ckpt, "trainer_state.json"))),
        ("worker_state", lambda: read_json(os.path.join(ckpt, "worker_rank0.json"))),
        ("export", lambda: export_checkpoint(ckpt, ckpt + "_hf")),
    ]:
        try:
            read()
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    out[rel] = errors
print("RESULT=" + json.dumps(out))
"""


def test_a_forged_manifest_still_runs_no_code(checkpoints, tiny_model, tmp_path):
    """The readers themselves are data-only: each planted file fails to parse, naming it."""
    from logics_rl.controller.worker import free_port

    cases, markers = [], []
    for rel in files_of(os.path.join(checkpoints, "step_2")):
        if rel == MANIFEST:
            continue
        root, marker = tamper(checkpoints, tmp_path, rel, "payload")
        write_manifest(os.path.join(root, "step_2"))  # the forgery: it now matches
        cases.append((rel, os.path.join(root, "step_2")))
        markers.append(marker)
    proc = subprocess.run(
        [sys.executable, "-c", READERS, tiny_model, json.dumps(cases), str(free_port())],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT="))[7:])
    for marker in markers:
        assert not os.path.exists(marker)
    read_by = {  # file -> the readers that open it
        "shards/index.json": ("engine", "export"),
        "shards/rank00000.safetensors": ("engine", "export"),
        "scheduler.json": ("engine",),
        "trainer_state.json": ("trainer_state",),
        "worker_rank0.json": ("worker_state",),
        "engine.json": ("export",),
        "hf_config/config.json": ("export",),
    }
    for rel, readers in read_by.items():
        if rel not in result:  # worker_rank0.json: RL checkpoints only
            continue
        for reader in readers:
            hit = [e for e in result[rel] if e.startswith(reader + ":")]
            assert hit and rel.split("/")[-1] in hit[0], (rel, reader, result[rel])
