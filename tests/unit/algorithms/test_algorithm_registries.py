"""The ADVANTAGES / POLICY_LOSSES registries: names, errors, decorator, import path, entry points."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from logics_rl.algorithms import ADVANTAGES, POLICY_LOSSES
from logics_rl.algorithms.actor_loss import ActorLossInput, actor_loss
from logics_rl.algorithms.advantages import AdvantageInput, AdvantageOutput, grpo
from logics_rl.algorithms.aggregation import GlobalNorm
from logics_rl.config.schema import AlgorithmConfig, PolicyLossConfig
from logics_rl.registry import UnknownPluginError


def test_built_ins_are_registered_on_package_import():
    assert {"grpo", "rloo", "reinforce_plus_plus", "reinforce_plus_plus_baseline"} <= set(
        ADVANTAGES.names()
    )
    assert {"ppo_clip", "gspo", "cispo"} <= set(POLICY_LOSSES.names())


def test_unknown_name_lists_valid_names_and_suggests_the_nearest():
    with pytest.raises(UnknownPluginError) as err:
        ADVANTAGES.get("gpro")
    msg = str(err.value)
    assert "did you mean 'grpo'?" in msg
    assert "rloo" in msg and "reinforce_plus_plus_baseline" in msg
    with pytest.raises(UnknownPluginError, match="did you mean 'cispo'.*gspo.*ppo_clip"):
        POLICY_LOSSES.get("cisp")


def test_import_path_resolves():
    assert ADVANTAGES.get("logics_rl.algorithms.advantages.grpo:grpo") is grpo


@pytest.fixture
def isolated_registries(monkeypatch):
    """Registrations made by a test disappear with it."""
    monkeypatch.setattr(ADVANTAGES, "_items", dict(ADVANTAGES._items))
    monkeypatch.setattr(POLICY_LOSSES, "_items", dict(POLICY_LOSSES._items))


def test_decorator_registration(isolated_registries):
    @ADVANTAGES.register("sign_of_score")
    def sign_of_score(inp: AdvantageInput, *, scale: float = 1.0) -> AdvantageOutput:
        adv = scale * torch.sign(inp.token_rewards_BT.sum(-1, keepdim=True)) * inp.mask_BT
        return AdvantageOutput(adv)

    out = ADVANTAGES.get("sign_of_score")(
        AdvantageInput(torch.tensor([[0.0, -3.0]]), torch.ones(1, 2), torch.tensor([0])),
        scale=2.0,
    )
    assert out.advantages_BT.tolist() == [[-2.0, -2.0]]
    with pytest.raises(ValueError, match="already registered"):
        ADVANTAGES.register("sign_of_score")(lambda inp: None)


PLUGIN = """
import torch
from logics_rl.algorithms.advantages import AdvantageOutput
from logics_rl.algorithms.policy_losses import PolicyLossOutput


def constant_advantage(inp):
    return AdvantageOutput(0.5 * inp.mask_BT.float())


def vanilla_pg(inp):
    return PolicyLossOutput(-inp.advantages_BT * inp.logp_BT * inp.mask_BT, {"ratio_max": torch.tensor(1.0)})
"""


@pytest.fixture
def entry_point_plugin(tmp_path, monkeypatch, isolated_registries):
    """A throwaway installed distribution: a module plus a ``*.dist-info`` with entry points."""
    (tmp_path / "lrl_algo_plugin_example.py").write_text(PLUGIN)
    info = tmp_path / "lrl_algo_plugin_example-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lrl-algo-plugin-example\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [logics_rl.advantages]
            half_everywhere = lrl_algo_plugin_example:constant_advantage

            [logics_rl.policy_losses]
            vanilla_pg = lrl_algo_plugin_example:vanilla_pg
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("lrl_algo_plugin_example", None)


def test_entry_point_plugins_are_found_by_name(entry_point_plugin):
    assert "half_everywhere" in ADVANTAGES.names()
    assert "vanilla_pg" in POLICY_LOSSES.names()
    out = ADVANTAGES.get("half_everywhere")(
        AdvantageInput(torch.zeros(1, 3), torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([0])),
    )
    assert out.advantages_BT.tolist() == [[0.5, 0.5, 0.0]]

    # And the train-side path uses it through the config name.
    logp = torch.tensor([[-1.0, -3.0]], requires_grad=True)
    cfg = AlgorithmConfig(policy_loss=PolicyLossConfig(name="vanilla_pg"))
    loss, metrics = actor_loss(
        ActorLossInput(logp, logp.detach(), torch.ones(1, 2), torch.ones(1, 2)),
        cfg,
        GlobalNorm(2, 1),
    )
    assert loss.item() == pytest.approx(2.0)  # token-mean of -A logp = (1 + 3) / 2
    assert metrics["actor/ratio_max"] == 1.0


def test_entry_point_is_not_visible_without_the_distribution():
    assert "half_everywhere" not in ADVANTAGES.names()
