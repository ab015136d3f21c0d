"""The rollout collector's refill and trim, driven by a scripted stand-in for the worker group
(the real group is exercised end to end in tests/integration/test_rl_trainer.py)."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console

from logics_rl.config.loader import ConfigError, load_config
from logics_rl.data.prompts import PromptRecord
from logics_rl.data.sampler import EpochSampler
from logics_rl.engines.rollout import Sampling
from logics_rl.errors import TrainingError
from logics_rl.filters import build_filters
from logics_rl.rewards import REWARDS, RewardInput, RewardResult, build_reward
from logics_rl.tracking import PhaseTimer
from logics_rl.trainer.collector import PromptSource, RolloutCollector


@REWARDS.register("test_collector_truth", overwrite=True)
def truth_is_score(batch: RewardInput) -> RewardResult:
    """The scripted group hands every sample its score as its ground truth ("0" or "1")."""
    return RewardResult(scores=[float(g) for g in batch.ground_truths])


class ScriptedGroup:
    """generate_sequences as the hybrid group lays it out: n samples per prompt, prompt-major.
    A prompt's ground truth is its samples' score pattern: "01" varies, "00" does not."""

    def __init__(self):
        self.calls = 0

    def generate_sequences(self, prompts, sampling: Sampling):
        self.calls += 1
        out = prompts.repeat(sampling.n)
        n = len(out)
        mask = torch.ones(n, 2, dtype=torch.bool)
        truths = list(out["ground_truth"])
        return out.with_columns(
            {
                "response_ids": torch.ones(n, 2, dtype=torch.long),
                "response_mask": mask,
                "rollout_logp": torch.zeros(n, 2),
                "truncated": torch.zeros(n, dtype=torch.bool),
                "policy_version": torch.zeros(n, dtype=torch.long),
                "response": ["ok"] * n,
                "finish_reason": ["stop"] * n,
                # the j-th sample of a prompt scores ground_truth[j]
                "ground_truth": [truths[i][i % sampling.n] for i in range(n)],
            },
            meta={"temperature": sampling.temperature},
        )


def collector(
    truths: list[str], on_cap="train", cap=2, prompts_per_step=2, mini_batches=1, oversample=1.0
):
    records = [PromptRecord([1, 2], f"q{i}", t, "src") for i, t in enumerate(truths)]
    source = PromptSource(records, EpochSampler(len(records), seed=0, shuffle=False), 0, 2)
    cfg = load_config(
        None,
        [
            "data.train_files=[x]",
            f"trainer.prompts_per_step={prompts_per_step}",
            f"trainer.mini_batches_per_step={mini_batches}",
            f"trainer.dynamic_sampling.max_gen_batches={cap}",
            f"trainer.dynamic_sampling.on_cap={on_cap}",
            f"trainer.dynamic_sampling.oversample={oversample}",
            "rollout.n=2",
        ],
    )
    reward = build_reward({"terms": [{"name": "test_collector_truth"}], "num_workers": 0})
    filters = build_filters([{"name": "zero_variance", "params": {"metric": "score"}}])
    out = io.StringIO()
    c = RolloutCollector(
        cfg, ScriptedGroup(), source, reward, filters, Sampling(n=2, max_tokens=2), 1,
        Console(file=out, width=200),
    )  # fmt: skip
    return c, out


def test_refills_until_the_step_is_full_and_keeps_uids_running():
    c, _ = collector(["00", "01", "10", "11", "01"])
    batch, m = c.collect(1, PhaseTimer())
    # round 1: prompts 0 ("00", dropped) and 1 (kept); round 2: prompts 2 (kept) and 3
    assert m["batch/gen_rounds"] == 2.0 and m["batch/kept_groups"] == 2.0
    assert batch["uid"].tolist() == [1, 1, 2, 2]
    assert m["filter/kept_groups"] == 2.0 and m["filter/dropped_groups"] == 2.0
    assert c.prompts.next_uid == 4


def test_oversample_fills_the_step_in_one_round_and_trains_on_the_first_kept_groups():
    c, _ = collector(["00", "01", "10", "11", "01", "10"], oversample=2.0)
    batch, m = c.collect(1, PhaseTimer())
    # one round of ceil(2 x 2) = 4 prompts: 1 and 2 kept (0 and 3 dropped)
    assert m["batch/gen_rounds"] == 1.0 and c.workers.calls == 1
    assert batch["uid"].tolist() == [1, 1, 2, 2] and c.prompts.next_uid == 4
    c, _ = collector(["01", "10", "01", "10"], oversample=1.5)  # ceil(1.5 x 2) = 3 prompts
    batch, m = c.collect(1, PhaseTimer())
    assert c.prompts.next_uid == 3 and m["filter/kept_groups"] == 3.0
    assert batch["uid"].tolist() == [0, 0, 1, 1]  # the surplus kept group is not trained on
    assert m["batch/kept_groups"] == 2.0
    with pytest.raises(ConfigError, match="oversample must be >= 1"):
        collector(["01"], oversample=0.5)


def test_cap_trains_on_what_was_kept_or_stops():
    c, out = collector(["00", "01", "11", "00"])
    batch, m = c.collect(3, PhaseTimer())
    assert m["batch/kept_groups"] == 1.0 and batch["uid"].tolist() == [1, 1]
    assert "step 3: only 1/2 prompt groups survived" in out.getvalue()
    c, _ = collector(["00", "11"], cap=1)
    batch, _ = c.collect(1, PhaseTimer())
    assert batch is None  # nothing kept: the update is skipped
    c, _ = collector(["00", "11"], on_cap="stop", cap=1)
    with pytest.raises(TrainingError, match="on_cap=stop"):
        c.collect(1, PhaseTimer())


def test_trim_cuts_to_a_size_every_mini_batch_divides():
    # 2 groups of 2 samples kept, 4 mini-batches: 4 rows divide; 3 prompts of which 2 kept
    c, _ = collector(["01", "00", "10"], prompts_per_step=2, mini_batches=4)
    batch, _ = c.collect(1, PhaseTimer())
    assert len(batch) == 4
    c, _ = collector(["01", "10"], prompts_per_step=2, mini_batches=4)
    c.cfg.trainer.mini_batches_per_step = 8  # more mini-batches than kept samples
    with pytest.raises(TrainingError, match="fewer kept samples than 8"):
        c.collect(1, PhaseTimer())
