"""What a verified, data-only checkpoint costs: save, manifest, verify, load, export.

    python benchmarks/bench_checkpoint.py [--model smollm2|tiny|DIR] [--rounds 2]

One process (a one-rank gloo world), the FSDP2 engine with its AdamW state initialised, on a
local disk. Side by side in one run, medians over ``--rounds``:
- the engine's save (safetensors shards + JSON index) vs ``torch.distributed.checkpoint.save``
  of the same state (what the engine used before; its ``.metadata`` is a pickle);
- writing the manifest (SHA-256 of every file) and verifying it, as resume and export do;
- the engine's load vs ``torch.distributed.checkpoint.load``; the offline HF export.
Reported with the checkpoint's size and the disk's throughput (MB/s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile

from common import Timer, machine, model_path, single_process_world, today


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    a = ap.parse_args()

    import torch.distributed.checkpoint as dcp

    from logics_rl.checkpoint import verify, write_manifest
    from logics_rl.config.schema import TrainEngineConfig
    from logics_rl.engines.train import build_train_engine, export_checkpoint

    single_process_world()
    path = model_path(a.model)
    engine = build_train_engine(TrainEngineConfig(), path, total_steps=10)
    engine._train_state()  # initialises the AdamW state, as after a first step
    root = a.dir or tempfile.mkdtemp(prefix="bench_ckpt_")
    times: dict[str, list[float]] = {}
    size = 0
    for r in range(a.rounds):
        ck = os.path.join(root, f"ckpt_{r}")
        old = os.path.join(root, f"dcp_{r}")
        steps = [
            ("save (shards)", lambda ck=ck: engine.save_checkpoint(ck)),
            (
                "save (DCP, before)",
                lambda old=old: dcp.save(engine._train_state(), checkpoint_id=old),
            ),
            ("manifest (SHA-256)", lambda ck=ck: write_manifest(ck)),
            ("verify", lambda ck=ck: verify(ck)),
            ("load (shards)", lambda ck=ck: engine.load_checkpoint(ck)),
            (
                "load (DCP, before)",
                lambda old=old: dcp.load(engine._train_state(), checkpoint_id=old),
            ),
        ]
        for name, fn in steps:
            with Timer() as t:
                fn()
            times.setdefault(name, []).append(t.seconds)
        with open(os.path.join(ck, "COMPLETE"), "w") as fh:
            fh.write("0\n")
        with Timer() as t:
            export_checkpoint(ck, os.path.join(root, f"hf_{r}"))
        times.setdefault("export (verify + HF directory)", []).append(t.seconds)
        size = _dir_bytes(ck)
        dcp_size = _dir_bytes(old)
        for p in (ck, old, os.path.join(root, f"hf_{r}")):
            shutil.rmtree(p, ignore_errors=True)
    mb = size / 2**20
    print(f"machine: {machine()}; date {today()}; model {a.model}; rounds {a.rounds}")
    print(
        f"checkpoint {mb:.0f} MB (shards + JSON); DCP of the same state {dcp_size / 2**20:.0f} MB"
    )
    print("| step | median s | MB/s |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        s = statistics.median(ts)
        print(f"| {name} | {s:.2f} | {mb / s:.0f} |")


if __name__ == "__main__":
    main()
