"""Data-parallel split and collect, without Ray: the padding never reaches the caller, whatever
the number of output rows per input row, and calls that must not see copies refuse them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logics_rl.controller.dispatch import Dispatch, DPSplit, collect, split_for_dp
from logics_rl.protocol import Batch


def rows(n: int) -> Batch:
    return Batch.from_dict({"x": torch.arange(n)}, {"name": [f"r{i}" for i in range(n)]})


def test_split_pads_with_copies_and_records_real_rows():
    parts, split = split_for_dp(rows(5), 2, pad=True, what="m")
    assert [p["x"].tolist() for p in parts] == [[0, 1, 2], [3, 4, 0]]  # one copy of row 0
    assert split == DPSplit(part_rows=3, real_rows=(3, 2)) and split.padded
    parts, split = split_for_dp(rows(1), 3, pad=True, what="m")
    assert split.real_rows == (1, 0, 0)  # whole parts of padding


def test_split_without_padding_refuses_an_indivisible_batch():
    parts, split = split_for_dp(rows(4), 2, pad=False, what="update_actor")
    assert not split.padded and len(parts) == 2
    with pytest.raises(ValueError, match="update_actor: 5 rows do not divide over 2"):
        split_for_dp(rows(5), 2, pad=False, what="update_actor")
    with pytest.raises(ValueError, match="empty batch"):
        split_for_dp(rows(0), 2, pad=True, what="m")


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 30), dp=st.integers(1, 5), per_row=st.integers(1, 4))
def test_collect_strips_every_row_derived_from_padding(n, dp, per_row):
    """A method returning ``per_row`` rows per input row (n samples per prompt), in order."""
    parts, split = split_for_dp(rows(n), dp, pad=True, what="m")
    outputs = [p.repeat(per_row) for p in parts]  # what each rank returns
    out = collect(outputs, Dispatch.DP_COMPUTE, split, "m")
    assert out["x"].tolist() == [i for i in range(n) for _ in range(per_row)]
    assert list(out["name"]) == [f"r{i}" for i in range(n) for _ in range(per_row)]


def test_collect_rejects_outputs_it_cannot_unpad():
    parts, split = split_for_dp(rows(3), 2, pad=True, what="m")
    with pytest.raises(TypeError, match="padded DP_COMPUTE call must return a Batch"):
        collect([{"loss": 1.0}, {"loss": 2.0}], Dispatch.DP_COMPUTE, split, "m")
    with pytest.raises(ValueError, match="whole number of rows per input row"):
        collect([rows(3), rows(1)], Dispatch.DP_COMPUTE, split, "m")
    unpadded = split_for_dp(rows(4), 2, pad=True, what="m")[1]
    assert collect([{"a": 1}, {"a": 2}], Dispatch.DP_COMPUTE, unpadded, "m") == [{"a": 1}, {"a": 2}]
    assert collect([1, 2], Dispatch.ONE_TO_ALL, None, "m") == [1, 2]
