"""Config loading: defaults, recipes, overrides, and errors that name the key."""

from __future__ import annotations

import glob
import os

import pytest

from logics_rl.config.loader import ConfigError, load_config
from logics_rl.config.schema import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.yaml")))


def write(tmp_path, text: str) -> str:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return str(p)


def test_defaults_come_from_the_schema():
    cfg = load_config(None, ["data.train_files=[x.jsonl]"])
    assert isinstance(cfg, Config)
    assert cfg.rollout.n == 8 and cfg.algorithm.policy_loss.clip_low == 0.2
    assert cfg.trainer.run_dir == "runs/run"  # interpolation resolved


def test_overrides_and_recipe_merge(tmp_path):
    path = write(tmp_path, "mode: rl\ndata:\n  train_files: [a.jsonl]\nrollout:\n  n: 4\n")
    cfg = load_config(
        path, ["rollout.n=16", "algorithm.policy_loss.clip_high=0.28", "trainer.name=x"]
    )
    assert cfg.rollout.n == 16 and cfg.algorithm.policy_loss.clip_high == 0.28
    assert cfg.trainer.run_dir == "runs/x"


def test_unknown_key_names_the_nearest(tmp_path):
    path = write(tmp_path, "rollout:\n  temprature: 0.7\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "rollout.temprature" in msg and "did you mean" in msg
    with pytest.raises(ConfigError, match="did you mean 'trainer.prompts_per_step'"):
        load_config(None, ["trainer.prompt_per_step=3"])
    with pytest.raises(ConfigError, match="did you mean 'algorithm.policy_loss.clip_high'"):
        load_config(None, ["algorithm.policy_loss.clip_hihg=0.3"])


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["rollout.n=many"])
    assert "rollout.n" in str(info.value) and "many" in str(info.value)


def test_semantic_checks():
    with pytest.raises(ConfigError, match="mode must be"):
        load_config(None, ["mode=ppo", "data.train_files=[a]"])
    with pytest.raises(ConfigError, match="loss_agg_mode"):
        load_config(None, ["algorithm.policy_loss.loss_agg_mode=mean", "data.train_files=[a]"])
    with pytest.raises(ConfigError, match="divide into"):
        load_config(
            None,
            [
                "trainer.prompts_per_step=3",
                "rollout.n=3",
                "trainer.mini_batches_per_step=2",
                "data.train_files=[a]",
            ],
        )
    with pytest.raises(ConfigError, match="train_files is empty"):
        load_config(None, [])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["rollout.n"])


def test_old_log_prob_source_is_checked():
    ok = ["data.train_files=[a]", "algorithm.old_log_prob=rollout"]
    assert load_config(None, ok).algorithm.old_log_prob == "rollout"
    with pytest.raises(ConfigError, match="recompute or rollout, got 'vllm'"):
        load_config(None, ["data.train_files=[a]", "algorithm.old_log_prob=vllm"])
    with pytest.raises(ConfigError, match="top_p 0.9"):
        load_config(None, ok + ["rollout.engine.top_p=0.9"])
    with pytest.raises(ConfigError, match="top_k 20"):
        load_config(None, ok + ["rollout.engine.top_k=20"])
    with pytest.raises(ConfigError, match="tis_cap"):
        load_config(None, ok + ["algorithm.policy_loss.tis_cap=2.0"])


def test_missing_and_broken_recipe(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(write(tmp_path, "a: [1, 2\n"))


def test_embedded_quickstart_loads():
    from logics_rl.main import QUICKSTART

    cfg = load_config(QUICKSTART)
    assert cfg.mode == "sft_rl" and cfg.model.path == "tiny"


@pytest.mark.parametrize("recipe", RECIPES, ids=[os.path.basename(r) for r in RECIPES])
def test_every_recipe_validates(recipe):
    cfg = load_config(recipe)
    from logics_rl.filters import FILTERS
    from logics_rl.rewards import REWARDS, build_reward

    for term in cfg.reward.terms:
        assert term.name in REWARDS
    for f in cfg.filters:
        assert f.name in FILTERS
    build_reward(cfg.reward)  # parameters are checked against each reward's signature


def test_recipes_exist():
    names = {os.path.basename(r) for r in RECIPES}
    assert {
        "grpo_qwen3_8b.yaml",
        "dapo_qwen3_8b.yaml",
        "logics_stem_rl_qwen3_8b.yaml",
        "smollm2_arith_cpu.yaml",
    } <= names
