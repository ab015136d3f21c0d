"""actor_loss: composition of its parts, the on-policy convention, errors, split exactness."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logics_rl.algorithms import POLICY_LOSSES
from logics_rl.algorithms.actor_loss import ActorLossInput, actor_loss
from logics_rl.algorithms.aggregation import LOSS_AGG_MODES, GlobalNorm, global_norm_of, norm_counts
from logics_rl.algorithms.policy_losses import PolicyLossInput
from logics_rl.config.schema import AlgorithmConfig, KLConfig, PolicyLossConfig
from logics_rl.metrics import merge_weighted


def algo(name: str = "ppo_clip", **params) -> AlgorithmConfig:
    return AlgorithmConfig(policy_loss=PolicyLossConfig(name=name, params=params))


def test_small_case_by_hand():
    # on-policy, one sequence of two valid tokens (third is padding)
    logp = torch.tensor([[-1.0, -2.0, 0.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0, 0.0]])
    entropy = torch.tensor([[1.0, 3.0, 50.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    cfg = AlgorithmConfig(kl=KLConfig(estimator="k1", loss_coef=0.5), entropy_coef=0.1)
    inp = ActorLossInput(
        logp, logp.detach(), torch.full((1, 3), 2.0), mask, ref_logp_BT=ref, entropy_BT=entropy
    )
    loss, m = actor_loss(inp, cfg, global_norm_of(norm_counts(mask)))
    # pg: -A * 1 = -2 per token ; kl: .5 * mean(.5, -1) = -.125 ; entropy: -.1 * mean(1, 3) = -.2
    assert loss.item() == pytest.approx(-2.325)
    assert m["actor/pg_loss"] == pytest.approx(-2.0)
    assert m["actor/kl_loss"] == pytest.approx(-0.25)
    assert m["actor/entropy"] == pytest.approx(2.0)
    assert m["actor/loss"] == pytest.approx(-2.325)
    assert m["actor/ratio_mean"] == 1.0
    loss.backward()
    # d/dlogp: (-A + beta) / N = (-2 + .5) / 2 ; d/dH: -c / N
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.75, -0.75, 0.0]]))
    torch.testing.assert_close(entropy.grad, torch.tensor([[-0.05, -0.05, 0.0]]))


def test_composition_equals_the_sum_of_its_parts():
    g = torch.Generator().manual_seed(3)
    B, T = 3, 4
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 2
    logp0 = old + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)
    rollout = old + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)
    ref = old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    ent0 = torch.rand(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, T, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.float64)
    cfg = AlgorithmConfig(
        policy_loss=PolicyLossConfig(
            params={"clip_high": 0.28}, tis_cap=1.5, loss_agg_mode="seq-mean-token-mean"
        ),
        kl=KLConfig(estimator="k3", loss_coef=0.04),
        entropy_coef=0.01,
    )
    norm = global_norm_of(norm_counts(mask))

    logp, ent = logp0.clone().requires_grad_(True), ent0.clone().requires_grad_(True)
    loss, metrics = actor_loss(ActorLossInput(logp, old, adv, mask, rollout, ref, ent), cfg, norm)
    loss.backward()

    # The same objective assembled by hand from the policy loss's per-token output.
    logp2, ent2 = logp0.clone().requires_grad_(True), ent0.clone().requires_grad_(True)
    pg = POLICY_LOSSES.get("ppo_clip")(
        PolicyLossInput(logp2, old, adv, mask), **cfg.policy_loss.params
    ).loss_BT
    raw_w = torch.exp(old - rollout)
    w = torch.minimum(raw_w, torch.tensor(1.5, dtype=torch.float64))
    x = ref - logp2
    k3 = torch.exp(x) - x - 1
    per_token = (pg * w + 0.04 * k3 - 0.01 * ent2) * mask
    expected = (per_token.sum(1) / mask.sum(1)).sum() / 3
    expected.backward()

    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logp.grad, logp2.grad)
    torch.testing.assert_close(ent.grad, ent2.grad)
    n = mask.sum()
    assert metrics["actor/tis_weight_mean"] == pytest.approx(float((w * mask).sum() / n))
    assert metrics["actor/tis_clip_frac"] == pytest.approx(float(((raw_w > 1.5) * mask).sum() / n))
    assert metrics["actor/kl_loss"] == pytest.approx(float((k3.detach() * mask).sum() / n))
    assert metrics["actor/entropy"] == pytest.approx(float((ent0 * mask).sum() / n))


@pytest.mark.parametrize("name", ["ppo_clip", "gspo", "cispo"])
def test_on_policy_convention_gives_ratio_one_and_minus_mean_advantage(name):
    logp = torch.tensor([[-0.3, -1.2, 0.0], [-0.7, -0.1, -2.0]], requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, 9.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    inp = ActorLossInput(logp, logp.detach(), adv, mask)  # the documented on-policy convention
    loss, m = actor_loss(inp, algo(name=name), global_norm_of(norm_counts(mask)))
    assert m["actor/ratio_mean"] == 1.0 and m["actor/ratio_max"] == 1.0
    assert m["actor/clip_frac_high"] == 0.0 and m["actor/ppo_kl"] == 0.0
    mean_adv = (1.0 + 1.0 - 0.5 * 3) / 5
    if name != "cispo":  # CISPO's loss value is -A logp; its gradient is the same -A
        assert loss.item() == pytest.approx(-mean_adv)
        assert m["actor/pg_loss"] == pytest.approx(-mean_adv)
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv * mask / 5)


def test_missing_inputs_are_clear_errors():
    lp = torch.zeros(1, 2, requires_grad=True)
    inp = ActorLossInput(lp, lp.detach(), torch.ones(1, 2), torch.ones(1, 2))
    norm = GlobalNorm(2, 1)
    with pytest.raises(ValueError, match="rollout log-probs"):
        actor_loss(inp, AlgorithmConfig(policy_loss=PolicyLossConfig(tis_cap=2.0)), norm)
    with pytest.raises(ValueError, match="ref_logp"):
        actor_loss(inp, AlgorithmConfig(kl=KLConfig(loss_coef=0.1)), norm)
    with pytest.raises(ValueError, match="entropy"):
        actor_loss(inp, AlgorithmConfig(entropy_coef=0.01), norm)
    with pytest.raises(KeyError, match="did you mean 'ppo_clip'"):
        actor_loss(inp, algo(name="ppo_clipp"), norm)


def test_metric_keys_and_finite_values():
    lp = torch.zeros(1, 2, requires_grad=True)
    _, m = actor_loss(
        ActorLossInput(lp, lp.detach() - 0.1, torch.ones(1, 2), torch.ones(1, 2)),
        algo(),
        GlobalNorm(2, 1),
    )
    assert set(m) == {
        "actor/loss",
        "actor/pg_loss",
        "actor/clip_frac_high",
        "actor/clip_frac_low",
        "actor/ppo_kl",
        "actor/ratio_mean",
        "actor/ratio_max",
        "actor/dual_clip_frac",
    }
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())


# --------------------------------------------------------------------------- split exactness
@st.composite
def actor_batches(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    B = draw(st.integers(1, 6))
    T = draw(st.integers(1, 5))
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    fields = dict(
        logp0=old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64),
        old=old,
        rollout=old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64),
        ref=old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64),
        ent0=torch.rand(B, T, generator=g, dtype=torch.float64),
        adv=torch.randn(B, T, generator=g, dtype=torch.float64),
        mask=mask,
    )
    cut = draw(st.integers(0, B))
    rank_of = draw(st.lists(st.integers(0, 1), min_size=B, max_size=B))
    return fields, cut, rank_of


@settings(max_examples=40, deadline=None)
@given(
    actor_batches(), st.sampled_from(["ppo_clip", "gspo", "cispo"]), st.sampled_from(LOSS_AGG_MODES)
)
def test_actor_loss_split_over_micro_batches_and_ranks_is_exact(batch, name, mode):
    f, cut, rank_of = batch
    B = f["mask"].shape[0]
    cfg = AlgorithmConfig(
        policy_loss=PolicyLossConfig(
            name=name,
            params={"clip_low": 0.1, "clip_high": 0.1} if name == "gspo" else {},
            loss_agg_mode=mode,
            tis_cap=1.2,
        ),
        kl=KLConfig(estimator="k3", loss_coef=0.05),
        entropy_coef=0.01,
    )
    norm = global_norm_of(norm_counts(f["mask"]), norm_const=7.0)

    def run(rows):
        logp = f["logp0"].clone().requires_grad_(True)
        ent = f["ent0"].clone().requires_grad_(True)
        pick = lambda k: f[k][rows]  # noqa: E731
        inp = ActorLossInput(
            logp[rows],
            pick("old"),
            pick("adv"),
            pick("mask"),
            pick("rollout"),
            pick("ref"),
            ent[rows],
        )
        return logp, ent, *actor_loss(inp, cfg, norm)

    logp, ent, full, full_m = run(list(range(B)))
    full.backward()

    logp_s = f["logp0"].clone().requires_grad_(True)
    ent_s = f["ent0"].clone().requires_grad_(True)
    total, parts = torch.zeros((), dtype=torch.float64), []
    for rank in (0, 1):
        rows = [i for i in range(B) if rank_of[i] == rank]
        for mb in (rows[:cut], rows[cut:]):
            if not mb:
                continue
            inp = ActorLossInput(
                logp_s[mb],
                f["old"][mb],
                f["adv"][mb],
                f["mask"][mb],
                f["rollout"][mb],
                f["ref"][mb],
                ent_s[mb],
            )
            loss, m = actor_loss(inp, cfg, norm)
            total = total + loss
            parts.append((m, float(f["mask"][mb].sum())))  # the engine's token weights
    total.backward()

    torch.testing.assert_close(total, full.detach())
    torch.testing.assert_close(logp_s.grad, logp.grad)
    torch.testing.assert_close(ent_s.grad, ent.grad)
    if norm.num_tokens:  # the documented metric merge reproduces the full-batch metrics
        merged = merge_weighted(parts)
        for key in (
            "actor/loss",
            "actor/pg_loss",
            "actor/ratio_mean",
            "actor/ratio_max",
            "actor/kl_loss",
            "actor/entropy",
        ):
            assert merged[key] == pytest.approx(full_m[key], rel=1e-9, abs=1e-12), key
