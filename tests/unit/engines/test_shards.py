"""The sharded state format (``engines/train/shards.py``): safetensors + JSON, no pickle.

- the files are valid safetensors (read back by the safetensors library) and the tree keeps
  numbers, strings, None, tuples and lists;
- DTensor shards saved by 2 gloo ranks (uneven dim-0 split, as FSDP2 makes) load as full tensors
  on one process, and full tensors saved by one process load into each rank's shard of 2 ranks:
  both compared with the original tensors;
- a file that is not a shard file (a pickle) is refused with an error naming it.
"""

from __future__ import annotations

import os
import pickle
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from logics_rl.engines.train.shards import INDEX, load_state, rank_file, save_state
from logics_rl.errors import CheckpointError


def reference() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "model": {"w": torch.randn(5, 3, generator=g), "b": torch.randn(7, generator=g)},
        "optim": {
            "state": {"w": {"step": torch.tensor(3.0), "exp_avg": torch.randn(5, 3, generator=g)}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.95), "params": ["w"], "x": None}],
        },
        "half": torch.randn(4, 2, generator=g).to(torch.bfloat16),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
    }


def zeros_like(state):
    if isinstance(state, torch.Tensor):
        return torch.zeros_like(state)
    if isinstance(state, dict):
        return {k: zeros_like(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(zeros_like(v) for v in state)
    return "placeholder" if isinstance(state, str) else state


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def test_one_process_round_trip_is_plain_safetensors_and_json(tmp_path):
    ref = reference()
    save_state(ref, str(tmp_path), rank=0)
    assert sorted(os.listdir(tmp_path)) == [INDEX, rank_file(0)]
    raw = load_file(str(tmp_path / rank_file(0)))  # the safetensors library reads it
    assert torch.equal(raw["/model/w"], ref["model"]["w"]) and raw["/empty"].shape == (0, 3)
    template = zeros_like(ref)
    template["optim"]["param_groups"][0]["lr"] = 0.0
    out = load_state(template, str(tmp_path))
    assert_same(out, ref)
    assert out["model"]["w"] is template["model"]["w"]  # filled in place


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ranks(rank: int, world: int, port: int, directory: str, mode: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    ref = reference()["model"]
    try:
        if mode == "save":
            state = {k: distribute_tensor(v, mesh, [Shard(0)]) for k, v in ref.items()}
            save_state({"model": state}, directory, rank)
        else:
            state = {
                k: distribute_tensor(torch.zeros_like(v), mesh, [Shard(0)]) for k, v in ref.items()
            }
            out = load_state({"model": state}, directory)["model"]
            for k, v in out.items():
                torch.testing.assert_close(v.full_tensor(), ref[k], rtol=0, atol=0)
                torch.save(v.to_local(), os.path.join(directory, f"local_{k}_{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_shards_of_two_ranks_load_on_one_process_and_back(tmp_path):
    ref = reference()["model"]
    two = str(tmp_path / "two")
    mp.spawn(_ranks, args=(2, _free_port(), two, "save"), nprocs=2, join=True)
    assert sorted(os.listdir(two)) == [INDEX, rank_file(0), rank_file(1)]
    assert load_file(os.path.join(two, rank_file(1)))["/model/w"].shape == (2, 3)  # 3 + 2 rows
    out = load_state({"model": {k: torch.zeros_like(v) for k, v in ref.items()}}, two)
    assert_same(out["model"], ref)
    one = str(tmp_path / "one")
    save_state({"model": ref}, one, rank=0)
    mp.spawn(_ranks, args=(2, _free_port(), one, "load"), nprocs=2, join=True)
    local = torch.load(os.path.join(one, "local_w_1.pt"))
    assert torch.equal(local, ref["w"][3:])  # rank 1 holds rows 3-4 of the 5


def test_a_file_that_is_not_data_is_refused_by_name(tmp_path):
    save_state(reference(), str(tmp_path), rank=0)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / rank_file(0)).write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match=rank_file(0) + ": not a shard file"):
        load_state(zeros_like(reference()), str(tmp_path))
    (tmp_path / INDEX).write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match=INDEX + ": not JSON"):
        load_state(zeros_like(reference()), str(tmp_path))
    assert not marker.exists()
