"""Batch: construction checks, row / column operations, and their invariants."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logics_rl.protocol import Batch


def make(n: int, width: int = 3) -> Batch:
    return Batch.from_dict(
        {
            "ids": torch.arange(n * width).view(n, width),
            "score": torch.arange(n, dtype=torch.float32),
        },
        {"prompt": [f"p{i}" for i in range(n)], "gt": [{"a": i} for i in range(n)]},
        meta={"temperature": 1.0},
    )


def test_construction_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="batch size"):
        Batch.from_dict({"a": torch.zeros(3), "b": torch.zeros(4)})
    with pytest.raises(ValueError, match="'prompt' has 2 rows, expected 3"):
        Batch.from_dict({"a": torch.zeros(3)}, {"prompt": ["x", "y"]})
    with pytest.raises(ValueError, match="scalar"):
        Batch.from_dict({"a": torch.tensor(1.0)})


def test_getitem_columns_and_rows():
    b = make(4)
    assert b["ids"].shape == (4, 3)
    assert list(b["prompt"]) == ["p0", "p1", "p2", "p3"]
    assert list(b[1]["prompt"]) == ["p1"]
    assert list(b[[3, 0]]["prompt"]) == ["p3", "p0"]
    assert b[np.array([True, False, True, False])]["score"].tolist() == [0.0, 2.0]
    assert b[torch.tensor([2])]["gt"][0] == {"a": 2}
    assert b[1:3].meta == {"temperature": 1.0}
    with pytest.raises(KeyError, match="no key 'nope'"):
        b["nope"]


def test_setitem_checks_length():
    b = make(3)
    b["adv"] = torch.ones(3)
    b["source"] = ["a", "b", "c"]
    assert "adv" in b and "source" in b
    with pytest.raises(ValueError, match="batch size 3"):
        b["bad"] = torch.ones(2)
    with pytest.raises(ValueError, match="batch size 3"):
        b["bad"] = ["x"]


def test_repeat_interleaved_and_tiled():
    b = make(2)
    assert list(b.repeat(3)["prompt"]) == ["p0"] * 3 + ["p1"] * 3
    assert list(b.repeat(2, interleave=False)["prompt"]) == ["p0", "p1", "p0", "p1"]
    assert b.repeat(3)["ids"][:, 0].tolist() == [0, 0, 0, 3, 3, 3]


def test_union_merges_and_checks_conflicts():
    b = make(3)
    left = b.select(["ids", "prompt"])
    right = b.select(["score", "prompt", "gt"])
    u = left.union(right)
    assert set(u.keys()) == {"ids", "score", "prompt", "gt"}
    other = make(3)
    other["prompt"] = ["x", "y", "z"]
    with pytest.raises(ValueError, match="'prompt' differs"):
        left.union(other.select(["prompt"]))
    clash = b.select(["score"])
    clash.meta["temperature"] = 0.5
    with pytest.raises(ValueError, match="meta 'temperature' differs"):
        b.union(clash)
    with pytest.raises(ValueError, match="length"):
        b.union(make(2))


def test_concat_rejects_mismatched_keys_and_meta():
    a, b = make(2), make(2)
    b.meta["temperature"] = 0.7
    with pytest.raises(ValueError, match="meta 'temperature' differs"):
        Batch.concat([a, b])
    with pytest.raises(ValueError, match="keys"):
        Batch.concat([a, make(2).select(["ids"])])


def test_chunk_requires_divisibility():
    with pytest.raises(ValueError, match="equal parts"):
        make(5).chunk(2)


def test_pickle_round_trip():
    b = make(3)
    c = pickle.loads(pickle.dumps(b))
    assert torch.equal(c["ids"], b["ids"]) and list(c["gt"]) == list(b["gt"]) and c.meta == b.meta


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 8))
def test_pad_chunk_concat_unpad_round_trip(n, k):
    b = make(n)
    padded, pad = b.pad_to_multiple(k)
    assert len(padded) % k == 0 and 0 <= pad < k
    parts = padded.chunk(k)
    assert len({len(p) for p in parts}) == 1
    back = Batch.concat(parts).unpad(pad)
    assert torch.equal(back["ids"], b["ids"])
    assert list(back["prompt"]) == list(b["prompt"])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), size=st.integers(1, 12))
def test_split_then_concat_is_identity(n, size):
    b = make(n)
    parts = b.split(size)
    assert all(len(p) == size for p in parts[:-1]) and 1 <= len(parts[-1]) <= size
    back = Batch.concat(parts)
    assert torch.equal(back["score"], b["score"]) and list(back["gt"]) == list(b["gt"])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), r=st.integers(1, 5))
def test_repeat_keeps_rows_aligned(n, r):
    b = make(n)
    rep = b.repeat(r)
    assert len(rep) == n * r
    # tensor row i and non-tensor row i still describe the same sample
    for i in range(len(rep)):
        src = int(rep["score"][i])
        assert rep["prompt"][i] == f"p{src}" and rep["ids"][i, 0] == src * 3
