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


def test_repeat_interleaves_samples_of_a_prompt():
    b = make(2)
    assert list(b.repeat(3)["prompt"]) == ["p0"] * 3 + ["p1"] * 3
    assert b.repeat(3)["ids"][:, 0].tolist() == [0, 0, 0, 3, 3, 3]


def test_rows_are_copies_not_views():
    b = make(3)
    part = b[0:2]
    part["ids"][0, 0] = 99
    assert b["ids"][0, 0] == 0


def test_with_columns_returns_a_new_batch_and_leaves_the_input_alone():
    b = make(3)
    c = b.with_columns({"adv": torch.ones(3), "prompt": ["x", "y", "z"]}, meta={"k": 2})
    assert "adv" in c and list(c["prompt"]) == ["x", "y", "z"] and c.meta["k"] == 2
    assert "adv" not in b and list(b["prompt"]) == ["p0", "p1", "p2"] and "k" not in b.meta
    assert torch.equal(c["ids"], b["ids"])
    with pytest.raises(ValueError, match="batch size 3"):
        b.with_columns({"bad": torch.ones(2)})


def test_union_merges_and_checks_conflicts():
    b = make(3)
    left = Batch.from_dict({"ids": b["ids"]}, {"prompt": b["prompt"]})
    right = Batch.from_dict({"score": b["score"]}, {"prompt": b["prompt"], "gt": b["gt"]})
    u = left.union(right)
    assert set(u.columns()) == {"ids", "score", "prompt", "gt"}
    with pytest.raises(ValueError, match="'prompt' differs"):
        left.union(Batch.from_dict(non_tensors={"prompt": ["x", "y", "z"]}))
    clash = Batch.from_dict({"score": b["score"]}, meta={"temperature": 0.5})
    with pytest.raises(ValueError, match="meta 'temperature' differs"):
        b.union(clash)
    with pytest.raises(ValueError, match="length"):
        b.union(make(2))


def test_concat_rejects_mismatched_columns_and_meta():
    a, b = make(2), make(2)
    b.meta["temperature"] = 0.7
    with pytest.raises(ValueError, match="meta 'temperature' differs"):
        Batch.concat([a, b])
    with pytest.raises(ValueError, match="columns"):
        Batch.concat([a, Batch.from_dict({"ids": a["ids"]})])


def test_chunk_requires_divisibility():
    with pytest.raises(ValueError, match="equal parts"):
        make(5).chunk(2)


def test_pickle_round_trip():
    b = make(3)
    c = pickle.loads(pickle.dumps(b))
    assert torch.equal(c["ids"], b["ids"]) and list(c["gt"]) == list(b["gt"]) and c.meta == b.meta


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), k=st.integers(1, 6))
def test_chunk_then_concat_is_identity(n, k):
    b = make(n * k)
    back = Batch.concat(b.chunk(k))
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
