"""``EpochSampler`` state: a checkpoint's data position only applies to the same dataset."""

from __future__ import annotations

import pytest

from logics_rl.data.files import DataError
from logics_rl.data.sampler import EpochSampler


def test_state_names_the_dataset_size():
    a = EpochSampler(5, seed=1)
    a.take(7)
    assert a.state_dict() == {"epoch": 1, "pos": 2, "size": 5}


def test_resuming_over_other_data_is_an_error():
    a = EpochSampler(5, seed=1)
    a.take(3)
    b = EpochSampler(6, seed=1)
    with pytest.raises(DataError, match="taken over 5 rows, this run has 6"):
        b.load_state_dict(a.state_dict())
    assert b.take(6) == EpochSampler(6, seed=1).take(6)  # b is left as it was


def test_states_without_a_size_still_load():
    a = EpochSampler(5, seed=1)
    a.load_state_dict({"epoch": 2, "pos": 4})
    want = EpochSampler(5, seed=1)
    want.take(2 * 5 + 4)
    assert a.take(3) == want.take(3)
