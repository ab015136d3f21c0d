"""Policy losses: hand values, clipping boundaries, gradients, GSPO's sequence-level gradient."""

from __future__ import annotations

import math

import pytest
import torch

from logics_rl.algorithms import POLICY_LOSSES
from logics_rl.algorithms.policy_losses import PolicyLossInput
from logics_rl.algorithms.tis import apply_tis


def close(a, b, atol=1e-6):
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype), atol=atol, rtol=1e-5)


def with_ratios(ratios, adv, mask=None, base=-1.0):
    """Inputs whose ratio exp(logp - old) is ``ratios``; returns (inp, logp leaf)."""
    r = torch.tensor(ratios, dtype=torch.float64)
    old = torch.full_like(r, base)
    logp = (old + torch.log(r)).requires_grad_(True)
    mask = torch.ones_like(r) if mask is None else torch.tensor(mask, dtype=torch.float64)
    return PolicyLossInput(logp, old, torch.tensor(adv, dtype=torch.float64), mask), logp


def grad_of(loss_BT, logp):
    (g,) = torch.autograd.grad(loss_BT.sum(), logp)
    return g


# --------------------------------------------------------------------------- ppo_clip
def test_ppo_clip_hand_values_metrics_and_gradients():
    cfg = dict(clip_low=0.2, clip_high=0.28, dual_clip_c=3.0)
    #        clipped high, unclipped, clipped low, unclipped, dual clip, unclipped, padding
    ratios = [[1.5, 0.5, 0.5, 1.5, 5.0, 1.1, 2.0]]
    adv = [[1.0, 1.0, -1.0, -1.0, -1.0, 2.0, 1.0]]
    mask = [[1, 1, 1, 1, 1, 1, 0]]
    inp, logp = with_ratios(ratios, adv, mask)
    out = POLICY_LOSSES.get("ppo_clip")(inp, **cfg)
    close(out.loss_BT, [[-1.28, -0.5, 0.8, 1.5, 3.0, -2.2, 0.0]])
    # d(-A r)/d logp = -A r where unclipped; 0 on every clipped branch and on padding
    close(grad_of(out.loss_BT, logp), [[0.0, -0.5, 0.0, 1.5, 0.0, -2.2, 0.0]])
    m = out.metrics
    close(m["clip_frac_high"], 1 / 6)
    close(m["clip_frac_low"], 1 / 6)
    close(m["dual_clip_frac"], 1 / 6)
    close(m["ratio_mean"], (1.5 + 0.5 + 0.5 + 1.5 + 5.0 + 1.1) / 6)
    close(m["ratio_max"], 5.0)  # the padding's 2.0 would not change it, but 5 must be found
    close(m["ppo_kl"], -sum(math.log(r) for r in ratios[0][:6]) / 6)


def test_ppo_clip_without_dual_clip_is_unbounded_for_negative_advantages():
    inp, logp = with_ratios([[5.0]], [[-1.0]])
    out = POLICY_LOSSES.get("ppo_clip")(inp, dual_clip_c=None)
    close(out.loss_BT, [[5.0]])
    close(grad_of(out.loss_BT, logp), [[5.0]])
    close(out.metrics["dual_clip_frac"], 0.0)


@pytest.mark.parametrize("c", [1.0, 0.5])
def test_ppo_clip_rejects_dual_clip_at_or_below_one(c):
    inp, _ = with_ratios([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="dual_clip_c"):
        POLICY_LOSSES.get("ppo_clip")(inp, dual_clip_c=c)


def exact_ratio(log_ratio: float) -> float:
    """exp() as float64 computes it, so a bound can be set to exactly the ratio."""
    return float(torch.exp(torch.tensor(log_ratio, dtype=torch.float64)))


def test_ppo_clip_ratio_exactly_at_the_bounds_is_not_clipped():
    # Convention: at r == 1 +- eps (and r == c) the branch is NOT counted as clipped and the
    # gradient is the unclipped -A r. Just beyond the bound the loss is constant (gradient 0).
    up, down, c = exact_ratio(0.25), exact_ratio(-0.25), exact_ratio(1.5)
    cfg = dict(clip_high=up - 1.0, clip_low=1.0 - down, dual_clip_c=c)
    assert 1.0 + cfg["clip_high"] == up and 1.0 - cfg["clip_low"] == down
    old = torch.zeros(1, 3, dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0, -1.0]], dtype=torch.float64)

    logp = torch.tensor([[0.25, -0.25, 1.5]], dtype=torch.float64, requires_grad=True)
    out = POLICY_LOSSES.get("ppo_clip")(PolicyLossInput(logp, old, adv, torch.ones(1, 3)), **cfg)
    close(out.loss_BT, [[-up, down, c]])
    close(grad_of(out.loss_BT, logp), [[-up, down, c]])
    for key in ("clip_frac_high", "clip_frac_low", "dual_clip_frac"):
        assert out.metrics[key].item() == 0.0

    beyond = torch.tensor([[0.25 + 1e-9, -0.25 - 1e-9, 1.5 + 1e-9]], dtype=torch.float64)
    logp = beyond.clone().requires_grad_(True)
    out = POLICY_LOSSES.get("ppo_clip")(PolicyLossInput(logp, old, adv, torch.ones(1, 3)), **cfg)
    close(out.loss_BT, [[-up, down, c]], atol=1e-8)
    close(grad_of(out.loss_BT, logp), [[0.0, 0.0, 0.0]])
    assert out.metrics["clip_frac_high"].item() == pytest.approx(1 / 3)
    assert out.metrics["clip_frac_low"].item() == pytest.approx(1 / 3)
    assert out.metrics["dual_clip_frac"].item() == pytest.approx(1 / 3)


def test_ppo_clip_dual_clip_value_and_zero_gradient_for_negative_advantages():
    inp, logp = with_ratios([[4.0, 10.0, 2.5]], [[-2.0, -0.5, -1.0]])
    out = POLICY_LOSSES.get("ppo_clip")(inp, dual_clip_c=3.0)
    close(out.loss_BT, [[6.0, 1.5, 2.5]])  # -A*c, -A*c, -A*r (2.5 < c)
    close(grad_of(out.loss_BT, logp), [[0.0, 0.0, 2.5]])
    close(out.metrics["dual_clip_frac"], 2 / 3)


def test_log_ratio_is_clamped_before_exp():
    old = torch.zeros(1, 1)
    logp = torch.full((1, 1), 50.0, requires_grad=True)
    out = POLICY_LOSSES.get("ppo_clip")(
        PolicyLossInput(logp, old, -torch.ones(1, 1), torch.ones(1, 1)),
        dual_clip_c=None,
    )
    close(out.metrics["ratio_max"], math.exp(20.0), atol=1.0)
    assert torch.isfinite(out.loss_BT).all()


# --------------------------------------------------------------------------- gspo
def test_gspo_sequence_ratio_values_and_clipping():
    cfg = dict(clip_low=3e-4, clip_high=4e-4)
    old = torch.zeros(2, 3, dtype=torch.float64)
    logp = torch.tensor(
        [[0.1, 0.3, 0.0], [0.0, 2e-4, 9.0]], dtype=torch.float64, requires_grad=True
    )
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]], dtype=torch.float64)  # 9.0 is padding: ignored
    adv = torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.5, 0.5]], dtype=torch.float64)
    out = POLICY_LOSSES.get("gspo")(PolicyLossInput(logp, old, adv, mask), **cfg)
    s0, s1 = math.exp(0.2), math.exp(1e-4)  # exp(mean log-ratio) per sequence
    # seq 0: s0 > 1 + 4e-4 with A > 0 -> clipped, constant; seq 1 inside the range
    close(out.loss_BT, [[-(1 + 4e-4), -(1 + 4e-4), 0.0], [-0.5 * s1, -0.5 * s1, 0.0]])
    # token-level form: d s_it / d logp_t = s_i, so the gradient is -A s_i per token
    close(grad_of(out.loss_BT, logp), [[0.0, 0.0, 0.0], [-0.5 * s1, -0.5 * s1, 0.0]])
    close(out.metrics["clip_frac_high"], 0.5)
    close(out.metrics["ratio_mean"], (2 * s0 + 2 * s1) / 4)
    close(out.metrics["ratio_max"], s0)


def test_gspo_gradient_is_the_sequence_level_gspo_gradient():
    # With seq-mean-token-mean aggregation, GSPO-token must give the gradient of
    # -(1/G) sum_i A_i exp(mean_t(logp - old)) (paper eq. for GSPO, unclipped region).
    g = torch.Generator().manual_seed(0)
    old = torch.randn(3, 4, generator=g, dtype=torch.float64)
    logp0 = old + 1e-5 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float64)
    adv_B = torch.tensor([0.7, -1.3, 0.4], dtype=torch.float64)
    adv = adv_B[:, None].expand(3, 4)
    cfg = dict(clip_low=0.5, clip_high=0.5)  # keep everything unclipped

    logp = logp0.clone().requires_grad_(True)
    out = POLICY_LOSSES.get("gspo")(PolicyLossInput(logp, old, adv, mask), **cfg)
    n = mask.sum(1)
    ((out.loss_BT * mask).sum(1) / n).mean().backward()

    ref = logp0.clone().requires_grad_(True)
    s = torch.exp(((ref - old) * mask).sum(1) / n)
    (-(adv_B * s)).mean().backward()
    torch.testing.assert_close(logp.grad, ref.grad)


# --------------------------------------------------------------------------- cispo
def test_cispo_clipped_stop_gradient_weight():
    ratios = [[0.5, 1.5, 2.0, 1.0]]
    adv = [[1.0, -1.0, 2.0, 3.0]]
    inp, logp = with_ratios(ratios, adv, mask=[[1, 1, 1, 0]], base=-1.0)
    out = POLICY_LOSSES.get("cispo")(inp, clip_high=0.28)
    w = [0.5, 1.28, 1.28]  # min(r, 1.28); no lower bound
    lp = [-1.0 + math.log(r) for r in ratios[0][:3]]
    close(out.loss_BT, [[-w[0] * 1.0 * lp[0], w[1] * lp[1], -w[2] * 2.0 * lp[2], 0.0]])
    # the weight is a constant: the gradient is -w A on every token, clipped or not
    close(grad_of(out.loss_BT, logp), [[-0.5, 1.28, -2.56, 0.0]])
    close(out.metrics["clip_frac_high"], 2 / 3)
    close(out.metrics["clip_frac_low"], 0.0)


# --------------------------------------------------------------------------- all losses
@pytest.mark.parametrize("name", ["ppo_clip", "gspo", "cispo"])
def test_on_policy_ratio_is_one_and_gradient_is_the_policy_gradient(name):
    g = torch.Generator().manual_seed(1)
    logp = (-torch.rand(2, 3, generator=g)).requires_grad_(True)
    adv = torch.randn(2, 3, generator=g)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    out = POLICY_LOSSES.get(name)(PolicyLossInput(logp, logp.detach(), adv, mask))
    assert out.metrics["ratio_mean"].item() == 1.0 and out.metrics["ratio_max"].item() == 1.0
    assert out.metrics["ppo_kl"].item() == 0.0
    assert (
        out.metrics["clip_frac_high"].item() == 0.0 and out.metrics["clip_frac_low"].item() == 0.0
    )
    torch.testing.assert_close(grad_of(out.loss_BT, logp), -adv * mask)
    if name != "cispo":  # CISPO's value is -A logp, the others' is -A r = -A
        torch.testing.assert_close(out.loss_BT, -adv * mask)


@pytest.mark.parametrize("name", ["ppo_clip", "gspo", "cispo"])
def test_losses_are_zero_outside_the_mask_even_with_garbage_padding(name):
    logp = torch.tensor([[-0.5, float("nan"), float("inf")]])
    old = torch.tensor([[-0.4, 0.0, 0.0]])
    mask = torch.tensor([[True, False, False]])
    out = POLICY_LOSSES.get(name)(PolicyLossInput(logp, old, torch.ones(1, 3), mask))
    assert torch.isfinite(out.loss_BT).all()
    assert out.loss_BT[0, 1:].tolist() == [0.0, 0.0]
    assert all(torch.isfinite(v) for v in out.metrics.values())


def test_policy_loss_input_checks_shapes():
    with pytest.raises(ValueError, match="advantages_BT"):
        PolicyLossInput(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2), torch.ones(2, 3))


# --------------------------------------------------------------------------- TIS
def test_tis_weights_are_truncated_constants():
    old = torch.log(torch.tensor([[0.5, 3.0, 1.0]], dtype=torch.float64))  # rollout logp = 0
    rollout = torch.zeros(1, 3, dtype=torch.float64)
    theta = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, m = apply_tis(theta * 2.0, old, rollout, mask, cap=2.0)
    close(loss, [[0.5 * 2.0, 2.0 * 4.0, 0.0]])  # weights min(.5, 2) and min(3, 2)
    close(grad_of(loss, theta), [[1.0, 4.0, 0.0]])  # weight * d(2 theta); no gradient into w
    close(m["tis_weight_mean"], 1.25)
    close(m["tis_clip_frac"], 0.5)
    with pytest.raises(ValueError, match="tis_cap"):
        apply_tis(theta, old, rollout, mask, cap=0.0)
