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
    assert cfg.rollout.n == 8 and cfg.algorithm.policy_loss.loss_agg_mode == "token-mean"
    assert cfg.trainer.run_dir == "runs/run"  # interpolation resolved


def test_overrides_and_recipe_merge(tmp_path):
    path = write(tmp_path, "mode: rl\ndata:\n  train_files: [a.jsonl]\nrollout:\n  n: 4\n")
    cfg = load_config(
        path, ["rollout.n=16", "algorithm.policy_loss.params.clip_high=0.28", "trainer.name=x"]
    )
    assert cfg.rollout.n == 16 and cfg.algorithm.policy_loss.params == {"clip_high": 0.28}
    assert cfg.trainer.run_dir == "runs/x"


def test_unknown_key_names_the_nearest(tmp_path):
    path = write(tmp_path, "rollout:\n  sampling:\n    temprature: 0.7\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "rollout.sampling.temprature" in msg and "did you mean" in msg
    with pytest.raises(ConfigError, match="did you mean 'trainer.prompts_per_step'"):
        load_config(None, ["trainer.prompt_per_step=3"])
    with pytest.raises(ConfigError, match="did you mean 'algorithm.policy_loss.tis_cap'"):
        load_config(None, ["algorithm.policy_loss.tis_cpa=0.3"])


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["rollout.n=many"])
    assert "rollout.n" in str(info.value) and "many" in str(info.value)


def test_semantic_checks():
    with pytest.raises(ConfigError, match="'mode': 'ppo'; choose one of rl, sft, sft_rl"):
        load_config(None, ["mode=ppo", "data.train_files=[a]"])
    with pytest.raises(
        ConfigError,
        match="'algorithm.policy_loss.loss_agg_mode': 'token_mena'; choose one of token-mean, "
        "seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm "
        r"\(did you mean 'token-mean'\?\)",
    ):
        load_config(
            None, ["algorithm.policy_loss.loss_agg_mode=token_mena", "data.train_files=[a]"]
        )
    with pytest.raises(
        ConfigError, match=r"'trainer.loggers\[1\]': 'tensorbord'; choose one of console"
    ):
        load_config(None, ["trainer.loggers=[console,tensorbord]", "data.train_files=[a]"])
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
    with pytest.raises(ConfigError, match="choose one of recompute, rollout"):
        load_config(None, ["data.train_files=[a]", "algorithm.old_log_prob=vllm"])
    with pytest.raises(ConfigError, match="top_p 0.9"):
        load_config(None, ok + ["rollout.sampling.top_p=0.9"])
    with pytest.raises(ConfigError, match="top_k 20"):
        load_config(None, ok + ["rollout.sampling.top_k=20"])
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
        "grpo_qwen3_8b_megatron.yaml",
        "dapo_qwen3_8b.yaml",
        "logics_stem_rl_qwen3_8b.yaml",
        "smollm2_arith_cpu.yaml",
    } <= names


def test_parallel_sizes_derive_the_data_parallel_size():
    from logics_rl.config.schema import data_parallel_size

    base = ["data.train_files=[a]", "cluster.procs_per_node=4", "trainer.prompts_per_step=4"]
    assert data_parallel_size(load_config(None, base)) == 4
    with pytest.raises(ConfigError, match="actor.engine=fsdp shards over data-parallel ranks only"):
        load_config(None, [*base, "actor.parallel.tensor=2"])
    mega = [*base, "actor.engine=megatron", "trainer.prompts_per_step=2"]
    assert data_parallel_size(load_config(None, [*mega, "actor.parallel.tensor=2"])) == 2
    assert data_parallel_size(load_config(None, [*mega, "actor.parallel.pipeline=4"])) == 1
    with pytest.raises(ConfigError, match="actor.parallel.sequence .* needs actor.parallel.tensor"):
        load_config(None, [*mega, "actor.parallel.sequence=true"])
    with pytest.raises(ConfigError, match="actor.parallel.context and actor.parallel.expert"):
        load_config(None, [*mega, "actor.parallel.context=2"])
    with pytest.raises(ConfigError, match="multiple of the data-parallel size \\(4\\)"):
        load_config(None, [*base, "trainer.prompts_per_step=6"])
    with pytest.raises(ConfigError, match="sft.batch_size \\(6\\)"):
        load_config(None, [*base, "mode=sft", "sft.batch_size=6", "sft.train_files=[b]"])


def test_printed_config_writes_choices_as_their_values_and_loads_again(tmp_path):
    from logics_rl.config.loader import to_yaml
    from logics_rl.main import QUICKSTART

    cfg = load_config(QUICKSTART, ["algorithm.policy_loss.loss_agg_mode=seq-mean-token-mean"])
    text = to_yaml(cfg)
    assert "loss_agg_mode: seq-mean-token-mean" in text and "mode: sft_rl" in text
    again = load_config(write(tmp_path, text))
    assert again == cfg


# Every setting a user can write, pinned: a new key, a renamed one or a changed default is a
# deliberate change to this list (and to the README / recipes), never an accident.
def _leaves(obj, prefix=""):
    import dataclasses

    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_leaves(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def test_the_config_surface_is_pinned():
    from logics_rl.config.loader import to_plain

    leaves = {k: to_plain(v) for k, v in _leaves(Config()).items()}
    assert len(leaves) == len(PINNED), sorted(set(leaves) ^ set(PINNED))
    assert leaves == PINNED


PINNED = {
    "mode": "rl",
    "model.path": "tiny",
    "model.tiny.hidden": 128,
    "model.tiny.layers": 2,
    "model.tiny.heads": 4,
    "model.tiny.kv_heads": 2,
    "model.tiny.max_positions": 2048,
    "data.train_files": [],
    "data.val_files": [],
    "data.max_prompt_length": 512,
    "data.apply_chat_template": True,
    "data.system_prompt": None,
    "data.shuffle": True,
    "data.synthetic.task": None,
    "data.synthetic.train_size": 2000,
    "data.synthetic.val_size": 128,
    "data.synthetic.min_digits": 1,
    "data.synthetic.max_digits": 2,
    "data.synthetic.seed": 1234,
    "data.synthetic.teacher_error_rate": 0.0,
    "data.synthetic.sft_borrow_keep": 1.0,
    "rollout.engine": "vllm",
    "rollout.n": 8,
    "rollout.max_response_length": 1024,
    "rollout.dtype": "auto",
    "rollout.sampling.temperature": 1.0,
    "rollout.sampling.top_p": 1.0,
    "rollout.sampling.top_k": -1,
    "rollout.sampling.stop": [],
    "rollout.sampling.ignore_eos": False,
    "rollout.vllm.enforce_eager": None,
    "rollout.vllm.kv_cache_gb": 1.0,
    "rollout.vllm.gpu_memory_utilization": 0.5,
    "rollout.weight_sync.bucket_mb": 512,
    "rollout.weight_sync.probe_tol": None,
    "rollout.weight_sync.probe_sequences": 4,
    "rollout.weight_sync.probe_length": 32,
    "validation.k": 4,
    "validation.temperature": 1.0,
    "validation.top_p": 1.0,
    "validation.every": 0,
    "validation.at_start": True,
    "validation.at_end": True,
    "actor.engine": "fsdp",
    "actor.parallel.tensor": 1,
    "actor.parallel.pipeline": 1,
    "actor.parallel.context": 1,
    "actor.parallel.expert": 1,
    "actor.parallel.sequence": False,
    "actor.dtype": "auto",
    "actor.attn_implementation": "auto",
    "actor.max_tokens_per_micro_batch": 8192,
    "actor.activation_checkpointing": False,
    "actor.logprob_chunk_size": 1024,
    "actor.logprob_keep_logits_mb": 256,
    "actor.share_prompts": False,
    "actor.optim.lr": 1e-06,
    "actor.optim.betas": [0.9, 0.999],
    "actor.optim.eps": 1e-08,
    "actor.optim.weight_decay": 0.01,
    "actor.optim.warmup_steps": 0,
    "actor.optim.schedule": "constant",
    "actor.optim.min_lr_ratio": 0.0,
    "actor.optim.grad_clip": 1.0,
    "algorithm.advantage.estimator": "grpo",
    "algorithm.advantage.params": {},
    "algorithm.policy_loss.name": "ppo_clip",
    "algorithm.policy_loss.params": {},
    "algorithm.policy_loss.tis_cap": None,
    "algorithm.policy_loss.loss_agg_mode": "token-mean",
    "algorithm.policy_loss.loss_norm_const": None,
    "algorithm.kl.estimator": "k3",
    "algorithm.kl.loss_coef": 0.0,
    "algorithm.kl.reward_coef": 0.0,
    "algorithm.kl.adaptive": False,
    "algorithm.kl.target": 0.1,
    "algorithm.kl.horizon": 10000,
    "algorithm.entropy_coef": 0.0,
    "algorithm.old_log_prob": "recompute",
    "reward.terms": [
        {"name": "math_verify", "weight": 1.0, "params": {}, "isolate": None, "timeout_s": None}
    ],
    "reward.num_workers": 2,
    "reward.timeout_s": 10.0,
    "reward.term_timeout_s": 300.0,
    "reward.max_failed_batches": 3,
    "filters": [],
    "trainer.project": "logics-rl",
    "trainer.name": "run",
    "trainer.run_dir": "runs/${trainer.name}",
    "trainer.seed": 0,
    "trainer.prompts_per_step": 16,
    "trainer.mini_batches_per_step": 1,
    "trainer.epochs_per_step": 1,
    "trainer.mini_batch_shuffle": "rows",
    "trainer.total_epochs": 1,
    "trainer.total_steps": None,
    "trainer.dynamic_sampling.max_gen_batches": 1,
    "trainer.dynamic_sampling.on_cap": "train",
    "trainer.dynamic_sampling.oversample": 1.0,
    "trainer.save_every": 0,
    "trainer.keep_last": 2,
    "trainer.prune_before_save": False,
    "trainer.on_corrupt_checkpoint": "fallback",
    "trainer.max_restarts": 0,
    "trainer.on_nonfinite": "skip",
    "trainer.max_nonfinite_steps": 3,
    "trainer.resume": "auto",
    "trainer.loggers": ["console", "jsonl"],
    "trainer.progress": True,
    "trainer.plot": True,
    "cluster.ray_address": None,
    "cluster.nnodes": 1,
    "cluster.procs_per_node": 1,
    "cluster.cpus_per_proc": 1.0,
    "cluster.use_gpu": None,
    "cluster.call_timeout_s": 3600.0,
    "cluster.repeat_call_timeout_factor": 10.0,
    "cluster.repeat_call_timeout_min_s": 600.0,
    "cluster.heartbeat_s": 60.0,
    "sft.train_files": [],
    "sft.val_files": [],
    "sft.max_length": 2048,
    "sft.batch_size": 32,
    "sft.epochs": 1,
    "sft.total_steps": None,
    "sft.val_every": 0,
    "sft.save_every": 0,
    "sft.optim.lr": 1e-05,
    "sft.optim.betas": [0.9, 0.999],
    "sft.optim.eps": 1e-08,
    "sft.optim.weight_decay": 0.01,
    "sft.optim.warmup_steps": 10,
    "sft.optim.schedule": "constant",
    "sft.optim.min_lr_ratio": 0.0,
    "sft.optim.grad_clip": 1.0,
    # the data engine (mode: curate)
    "curate.inputs": [],
    "curate.stages": ["annotate", "dedup", "decontaminate", "stratify"],
    "curate.workers": 0,
    "curate.on_bad_row": "error",
    "curate.prompt": "{question}\nPut the final answer in \\boxed{}.",
    "curate.annotate.tokenizer": None,
    "curate.annotate.language": True,
    "curate.annotate.judge.model": None,
    "curate.annotate.judge.prompt": 'Rate this problem. Reply with only a JSON object with the keys "difficulty" (an integer from 1 to 10) and "topic" (a short string).\n\nProblem: {question}\nAnswer: {answer}',
    "curate.annotate.judge.fields": {"difficulty": "int", "topic": "str"},
    "curate.annotate.judge.max_tokens": 128,
    "curate.annotate.judge.temperature": 0.0,
    "curate.annotate.judge.batch_size": 64,
    "curate.annotate.filters": [],
    "curate.dedup.exact": True,
    "curate.dedup.near": True,
    "curate.dedup.threshold": 0.7,
    "curate.dedup.num_perm": 128,
    "curate.dedup.shingle_size": 5,
    "curate.dedup.bands": None,
    "curate.dedup.rows": None,
    "curate.dedup.seed": 1,
    "curate.dedup.keep": "longest_solution",
    "curate.dedup.prefer_sources": [],
    "curate.dedup.max_rounds": 40,
    "curate.decontaminate.benchmarks": [],
    "curate.decontaminate.ngram": 13,
    "curate.decontaminate.fields": ["question"],
    "curate.distill.teacher": None,
    "curate.distill.k": 4,
    "curate.distill.temperature": 0.7,
    "curate.distill.top_p": 0.95,
    "curate.distill.max_tokens": 1024,
    "curate.distill.system_prompt": None,
    "curate.distill.prompt": "{question}\nPut the final answer in \\boxed{}.",
    "curate.distill.keep": "shortest",
    "curate.distill.batch_size": 64,
    "curate.stratify.length_field": "solution",
    "curate.stratify.strata": [
        {"upper_pct": 25.0, "keep": 0.2},
        {"upper_pct": 75.0, "keep": 0.6},
        {"upper_pct": 100.0, "keep": 1.0},
    ],
    "curate.stratify.seed": 0,
    "curate.stratify.bins": 8,
    # evaluation (mode: eval)
    "eval.files": [],
    "eval.k": 4,
    "eval.temperature": 1.0,
    "eval.top_p": 1.0,
    "eval.max_tokens": None,
    "eval.prompts_per_call": 256,
    "eval.write_samples": True,
    # the failure-driven loop (mode: failure_loop, or inside sft_rl)
    "failure_loop.enabled": False,
    "failure_loop.probe_files": [],
    "failure_loop.max_probes": None,
    "failure_loop.k": 8,
    "failure_loop.temperature": 1.0,
    "failure_loop.top_p": 1.0,
    "failure_loop.max_tokens": None,
    "failure_loop.fail_below": 0.5,
    "failure_loop.retrieval.name": "embedding",
    "failure_loop.retrieval.corpus": [],
    "failure_loop.retrieval.top_k": 4,
    "failure_loop.retrieval.params": {},
    "failure_loop.retrieval.field": "question",
    "failure_loop.synthesizer.name": "arithmetic",
    "failure_loop.synthesizer.per_failure": 4,
    "failure_loop.synthesizer.params": {},
    "failure_loop.verify.teacher": None,
    "failure_loop.verify.k": 4,
    "failure_loop.verify.agree": 0.75,
    "failure_loop.verify.temperature": 0.7,
    "failure_loop.verify.top_p": 0.95,
    "failure_loop.verify.max_tokens": 1024,
    "failure_loop.decontaminate_against": [],
    "failure_loop.mix_ratio": 0.3,
    "failure_loop.sft_steps": 0,
    "failure_loop.sft_lr": None,
    "failure_loop.seed": 0,
}


def test_stages_of_each_mode():
    from logics_rl.trainer.stages import stage_names

    base = ["data.train_files=[a]", "sft.train_files=[b]"]
    assert stage_names(load_config(None, [*base, "mode=sft_rl"])) == ["sft", "rl"]
    on = load_config(None, [*base, "mode=sft_rl", "failure_loop.enabled=true"])
    assert stage_names(on) == ["sft", "failure_loop", "rl"]
    cont = load_config(None, [*base, "mode=sft_rl", "failure_loop.enabled=true",
                              "failure_loop.sft_steps=5"])  # fmt: skip
    assert stage_names(cont) == ["sft", "failure_loop", "sft_continue", "rl"]
    # the loop alone leaves its files; continued SFT belongs to the two-stage run
    alone = load_config(None, [*base, "mode=failure_loop", "failure_loop.sft_steps=5"])
    assert stage_names(alone) == ["failure_loop"]
    with pytest.raises(ConfigError, match="failure_loop.sft_lr"):
        load_config(None, [*base, "failure_loop.sft_lr=0"])
    with pytest.raises(ConfigError, match="failure_loop.sft_steps"):
        load_config(None, [*base, "failure_loop.sft_steps=-1"])
    assert stage_names(load_config(None, [*base, "mode=failure_loop"])) == ["failure_loop"]
    assert stage_names(load_config(None, [*base, "mode=eval", "data.val_files=[c]"])) == ["eval"]
    with pytest.raises(ConfigError, match="data.train_files is empty"):
        load_config(None, ["mode=failure_loop"])
    with pytest.raises(ConfigError, match="mode=eval needs files"):
        load_config(None, ["mode=eval"])
    with pytest.raises(ConfigError, match=r"eval.files\[0\].k must be >= 1"):
        load_config(None, ["mode=eval", "eval.files=[{path: x, k: 0}]"])
