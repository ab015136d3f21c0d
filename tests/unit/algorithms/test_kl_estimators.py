"""KL estimators, the KL reward penalty, and the KL coefficient controllers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logics_rl.algorithms.kl import (
    AdaptiveKLController,
    FixedKLController,
    apply_kl_penalty,
    kl_estimate,
)

LOGP = torch.tensor([[-1.0, -2.0]])
REF = torch.tensor([[-1.5, -1.0]])  # logp - ref = [0.5, -1.0]


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("k1", [0.5, -1.0]),
        ("k2", [0.125, 0.5]),
        # exp(ref - logp) - (ref - logp) - 1 with ref - logp = [-0.5, 1]
        ("k3", [math.exp(-0.5) + 0.5 - 1.0, math.e - 2.0]),
    ],
)
def test_kl_estimators_hand_values(kind, expected):
    torch.testing.assert_close(kl_estimate(LOGP, REF, kind), torch.tensor([expected]))


def test_k3_clamps_like_verl():
    logp = torch.tensor([-30.0, 30.0, 0.0])
    out = kl_estimate(logp, torch.zeros(3), "k3")
    # log-ratio clamped to 20 -> e^20 - 21 -> clamped to 10; -20 -> e^-20 + 19 -> clamped to 10
    assert out.tolist() == [10.0, 10.0, 0.0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-40, 0), st.floats(-40, 0)), min_size=1, max_size=16))
def test_k3_is_non_negative(pairs):
    logp = torch.tensor([p for p, _ in pairs], dtype=torch.float64)
    ref = torch.tensor([r for _, r in pairs], dtype=torch.float64)
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    assert (kl_estimate(logp, ref, "k2") >= 0).all()


def test_unknown_estimator_lists_the_valid_ones():
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(LOGP, REF, "low_var")


def test_apply_kl_penalty_hand_values():
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [5.0, 0.0, 0.0]])
    logp = torch.tensor([[-1.0, -1.0, -3.0], [-1.0, -2.0, -1.0], [0.0, 0.0, 0.0]])
    ref = torch.tensor([[-1.5, -0.5, 0.0], [-1.0, -1.0, -1.0], [-9.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]]).bool()
    new, kl = apply_kl_penalty(rewards, logp, ref, mask, coef=0.1, kind="k1")
    # k1 = logp - ref: row 0 [.5, -.5, (pad)], row 1 [0, -1, 0], row 2 all masked
    torch.testing.assert_close(
        new, torch.tensor([[-0.05, 1.05, 0.0], [0.0, 0.1, 2.0], [5.0, 0.0, 0.0]])
    )
    # per-sequence token means 0 and -1/3, averaged over the two non-empty sequences
    assert kl.item() == pytest.approx(-1 / 6)
    assert not new.requires_grad


def test_fixed_controller_never_moves():
    ctl = FixedKLController(0.05)
    ctl.update(current_kl=10.0, n_steps=1000)
    assert ctl.value == 0.05


@pytest.mark.parametrize(
    "kl, expected",
    [
        (0.2, 0.1 * (1 + 0.2 * 10 / 100)),  # above target: error 1.0 clipped to +0.2
        (0.11, 0.1 * (1 + 0.1 * 10 / 100)),  # error 0.1, inside the clip
        (0.05, 0.1 * (1 - 0.2 * 10 / 100)),  # below target: error -0.5 clipped to -0.2
        (0.1, 0.1),
    ],
)
def test_adaptive_controller_moves_toward_the_target(kl, expected):
    ctl = AdaptiveKLController(init_kl_coef=0.1, target_kl=0.1, horizon=100)
    ctl.update(current_kl=kl, n_steps=10)
    assert ctl.value == pytest.approx(expected)


def test_adaptive_controller_state_round_trip_and_validation():
    a = AdaptiveKLController(0.1, 0.1, 100)
    a.update(0.5, 10)
    b = AdaptiveKLController(0.1, 0.1, 100)
    b.load_state_dict(a.state_dict())
    assert b.value == a.value != 0.1
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, 0.0, 100)
