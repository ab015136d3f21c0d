"""The RL trainer: one readable loop over generate -> reward -> filter -> update -> sync.

    python -m logics_rl.main --config recipes/dapo_qwen3_8b.yaml

One step (``_train_step``):
  1. the rollout collector samples prompts, generates n samples each, scores them, applies the
     dynamic-sampling filters, and generates more until ``prompts_per_step`` groups are kept
     (DAPO; up to ``max_gen_batches``, then train on what was kept with a warning, or stop);
  2. behaviour log-probs as ``behaviour`` says (recomputed, the rollout's, or none: on-policy),
     reference log-probs when a KL term needs them;
  3. advantages on the driver (registry estimator), KL reward penalty if configured;
  4. policy update on the workers (policy-loss registry, global loss normalisation);
  5. weight sync into the rollout engine, checked by the parity probe;
  6. metrics, validation every ``validation.every`` steps, checkpoint every ``save_every`` steps.
"""

from __future__ import annotations

import contextlib
import math

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from logics_rl.algorithms import ADVANTAGES, POLICY_LOSSES
from logics_rl.algorithms.advantages import AdvantageInput
from logics_rl.algorithms.kl import AdaptiveKLController, FixedKLController, apply_kl_penalty
from logics_rl.algorithms.mismatch import rollout_mismatch
from logics_rl.batches import (
    ADVANTAGES as ADV,
)
from logics_rl.batches import (
    BEHAVIOUR,
    ENTROPY,
    OLD_LOGP,
    REF_LOGP,
    ROLLOUT_LOGP,
    TOKEN_REWARDS,
    TRUNCATED,
    UID,
    Behaviour,
    ScoredBatch,
    TrainBatch,
)
from logics_rl.config.schema import Config
from logics_rl.data.prompts import load_prompts, to_batch
from logics_rl.data.sampler import EpochSampler
from logics_rl.engines.rollout import Sampling
from logics_rl.evaluation.answers import AnswerOptions
from logics_rl.filters import build_filters
from logics_rl.metrics import merge_weighted
from logics_rl.registry import check_params
from logics_rl.rewards import build_reward
from logics_rl.tracking import PhaseTimer
from logics_rl.trainer.collector import PromptSource, RolloutCollector
from logics_rl.trainer.run_state import RunState
from logics_rl.trainer.setup import report_data, start_workers
from logics_rl.trainer.validation import validate
from logics_rl.workers.actor import LOGP, UpdateSpec
from logics_rl.workers.hybrid import HybridSpec, HybridWorker
from logics_rl.workers.rollout import pad_id_of


def behaviour_of(cfg: Config) -> Behaviour:
    """On-policy unless the step takes several optimizer steps or a KL reward needs old log-probs."""
    t, alg = cfg.trainer, cfg.algorithm
    if t.epochs_per_step == 1 and t.mini_batches_per_step == 1 and alg.kl.reward_coef == 0:
        return Behaviour.on_policy
    return Behaviour(alg.old_log_prob.value)


class RLTrainer:
    """The RL stage: the loop below plus the algorithm steps it calls."""

    def __init__(self, cfg: Config, model_path: str, run_dir: str, console: Console | None = None):
        from transformers import AutoTokenizer

        self.cfg, self.run_dir, self.model_path = cfg, run_dir, model_path
        self.console = console or Console()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        train_set, self.val_set = self._load_data()
        self.prompt_width = max(len(p.prompt_ids) for p in train_set + self.val_set)
        t, alg = cfg.trainer, cfg.algorithm
        self.total_steps = t.total_steps or max(
            1, math.ceil(t.total_epochs * len(train_set) / t.prompts_per_step)
        )
        self.behaviour = behaviour_of(cfg)
        self.need_ref = alg.kl.loss_coef > 0 or alg.kl.reward_coef > 0
        self.advantage_fn = ADVANTAGES.get(alg.advantage.estimator)
        check_params(self.advantage_fn, alg.advantage.params, what="algorithm.advantage.params")
        loss_fn = POLICY_LOSSES.get(alg.policy_loss.name)
        check_params(loss_fn, alg.policy_loss.params, what="algorithm.policy_loss.params")
        kl = alg.kl
        self.kl_ctl = (
            AdaptiveKLController(kl.reward_coef, kl.target, kl.horizon)
            if kl.adaptive
            else FixedKLController(kl.reward_coef)
        )
        self.reward, self.filters = build_reward(cfg.reward), build_filters(cfg.filters)
        self.answers = AnswerOptions.of_reward(
            self.reward, cfg.reward.num_workers, cfg.reward.timeout_s
        )
        self.initial_val: dict[str, float] = {}
        sampler = EpochSampler(len(train_set), seed=t.seed, shuffle=cfg.data.shuffle)
        self.state = RunState(cfg, run_dir, sampler, name=t.name, console=self.console)
        self.prompts = PromptSource(
            train_set, sampler, pad_id_of(self.tokenizer), self.prompt_width
        )
        try:
            self.pool, self.workers = start_workers(
                cfg, HybridWorker, self._spec(), console=self.console
            )
        except BaseException:
            self.state.close()
            raise
        self.sampling = self._sampling()
        self.collector = RolloutCollector(
            cfg, self.workers, self.prompts, self.reward, self.filters, self.sampling,
            self.workers.dp_size, self.console,
        )  # fmt: skip

    def _load_data(self):
        cfg = self.cfg
        load = dict(
            max_prompt_length=cfg.data.max_prompt_length,
            apply_chat_template=cfg.data.apply_chat_template,
            system_prompt=cfg.data.system_prompt,
        )
        limit = f"data.max_prompt_length={cfg.data.max_prompt_length} tokens"
        train_set, counts = load_prompts(cfg.data.train_files, self.tokenizer, **load)
        report_data(self.console, "train prompts", len(train_set), counts, limit)
        val_set = []
        if cfg.data.val_files:
            val_set, counts = load_prompts(cfg.data.val_files, self.tokenizer, **load)
            report_data(self.console, "validation prompts", len(val_set), counts, limit)
        return train_set, val_set

    def _spec(self) -> HybridSpec:
        cfg, t = self.cfg, self.cfg.trainer
        return HybridSpec(
            model_path=self.model_path,
            actor=cfg.actor,
            rollout=cfg.rollout,
            update=UpdateSpec(
                cfg.algorithm,
                t.mini_batches_per_step,
                t.epochs_per_step,
                t.seed,
                str(t.mini_batch_shuffle),
            ),
            need_ref=self.need_ref,
            max_model_len=self.prompt_width + cfg.rollout.max_response_length,
            total_steps=self.total_steps * t.mini_batches_per_step * t.epochs_per_step,
            seed=t.seed,
        )

    def _sampling(self) -> Sampling:
        r = self.cfg.rollout
        s = r.sampling
        return Sampling(
            n=r.n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
            max_tokens=r.max_response_length, stop=list(s.stop), ignore_eos=s.ignore_eos,
        )  # fmt: skip

    # ================================================================== the loop
    def fit(self) -> dict[str, float]:
        v, t, state = self.cfg.validation, self.cfg.trainer, self.state
        self._maybe_resume()
        final: dict[str, float] = {}
        if v.at_start and state.step == 0:
            self.initial_val = self._validate()
            self._log_validation(self.initial_val)
        with self._progress() as (bar, task):
            bar.update(task, completed=state.step)
            while state.step < self.total_steps:
                state.step += 1
                metrics = self._train_step(bar, task)
                if state.due(v.every) and state.step < self.total_steps:
                    metrics.update(self._validate())
                state.log(metrics)
                bar.update(task, completed=state.step, description=self._where())
                if state.due(t.save_every) and state.step < self.total_steps:
                    self._save()
        if v.at_end:
            final = self._validate()
            self._log_validation(final)
        self._save()
        state.finish(title=t.name)
        return final

    def _train_step(self, bar, task) -> dict[str, float]:
        timer = PhaseTimer()
        bar.update(task, description=self._where("generate"))
        scored, metrics = self.collector.collect(self.state.step, timer)
        if scored is None:
            return {**metrics, **timer.metrics()}
        bar.update(task, description=self._where("update"))
        with timer("old_logp"):
            batch, m_old = self._behaviour_log_probs(scored)
        with timer("ref_logp"):
            batch = self._ref_log_probs(batch)
        with timer("advantages"):
            train, m_adv = self._advantages(batch)
        with timer("update"):
            m_upd = self._update(train)
        with timer("sync"):
            m_sync = self._sync()
        metrics.update({**m_old, **m_adv, **m_upd, **m_sync, **self._batch_metrics(train)})
        metrics.update(timer.metrics())
        metrics.update(self._throughput(metrics, timer))
        return metrics

    # ================================================================== steps of the loop
    def _behaviour_log_probs(self, scored: ScoredBatch) -> tuple[ScoredBatch, dict[str, float]]:
        """Behaviour-policy log-probs as ``self.behaviour`` says, recorded on the batch."""
        meta = {BEHAVIOUR: self.behaviour}
        if self.behaviour == Behaviour.on_policy:
            return ScoredBatch(scored.batch.with_columns(meta=meta)), {}
        if self.behaviour == Behaviour.rollout:
            columns = {OLD_LOGP: scored[ROLLOUT_LOGP]}
            return ScoredBatch(scored.batch.with_columns(columns, meta)), {}
        out = self.workers.compute_log_prob(scored.batch)
        batch = scored.batch.with_columns({OLD_LOGP: out[LOGP], ENTROPY: out[ENTROPY]}, meta)
        mask = scored.response_mask
        m = rollout_mismatch(out[LOGP], scored[ROLLOUT_LOGP], mask)
        m["actor/entropy"] = float((out[ENTROPY] * mask).sum() / mask.sum().clamp(min=1))
        return ScoredBatch(batch), m

    def _ref_log_probs(self, scored: ScoredBatch) -> ScoredBatch:
        if not self.need_ref:
            return scored
        return ScoredBatch(scored.batch.union(self.workers.compute_ref_log_prob(scored.batch)))

    def _advantages(self, scored: ScoredBatch) -> tuple[TrainBatch, dict[str, float]]:
        cfg = self.cfg.algorithm
        rewards, metrics, mask = scored[TOKEN_REWARDS], {}, scored.loss_mask
        if cfg.kl.reward_coef > 0:
            rewards, kl = apply_kl_penalty(
                rewards, scored[OLD_LOGP], scored[REF_LOGP], mask, self.kl_ctl.value,
                cfg.kl.estimator,
            )  # fmt: skip
            self.kl_ctl.update(float(kl), len(scored))
            metrics.update({"kl/reward_kl": float(kl), "kl/reward_coef": self.kl_ctl.value})
        group = torch.as_tensor([int(u) for u in scored[UID]], dtype=torch.long)
        adv = self.advantage_fn(
            AdvantageInput(rewards, mask, group), **cfg.advantage.params
        ).advantages_BT
        metrics["advantages/mean"] = float((adv * mask).sum() / mask.sum().clamp(min=1))
        metrics["advantages/abs_max"] = float((adv * mask).abs().max())
        return TrainBatch(scored.batch.with_columns({ADV: adv})), metrics

    def _update(self, train: TrainBatch) -> dict[str, float]:
        out = merge_weighted([(m, 1.0) for m in self.workers.update_actor(train.batch)])
        skipped = out.get("actor/skipped_steps", 0.0)
        self.state.check_finite(out, ("actor/pg_loss", "actor/grad_norm"), skipped)
        return out

    def _sync(self) -> dict[str, float]:
        return merge_weighted([(m, 1.0) for m in self.workers.sync_weights()])

    def _batch_metrics(self, train: TrainBatch) -> dict[str, float]:
        lengths = train.response_lengths.float()
        return {
            "batch/samples": float(len(train)),
            "response/length_mean": float(lengths.mean()),
            "response/length_max": float(lengths.max()),
            "response/clip_ratio": float(train[TRUNCATED].float().mean()),
        }

    def _throughput(self, metrics: dict[str, float], timer: PhaseTimer) -> dict[str, float]:
        """Generated tokens per second of generation; trained tokens (all data-parallel ranks)
        per second of update."""
        s = timer.seconds
        return {
            "throughput/gen_tokens_per_s": metrics["batch/gen_tokens"] / max(s["generate"], 1e-9),
            "throughput/train_tokens_per_s": metrics.get("actor/tokens", 0.0)
            * self.workers.dp_size
            / max(s["update"], 1e-9),
        }

    def _validate(self) -> dict[str, float]:
        if not self.val_set:
            return {}
        prompts = to_batch(self.val_set, self.prompts.pad_id, self.prompt_width)
        r = self.cfg.rollout
        return validate(
            self.workers, prompts, self.cfg.validation, self.sampling,
            self.reward, self.answers, r.max_response_length,
        )  # fmt: skip

    def _log_validation(self, metrics: dict[str, float]) -> None:
        if metrics:
            self.state.log(metrics)

    # ================================================================== checkpoints, progress
    def _save(self) -> str:
        extra = {"next_uid": self.prompts.next_uid, "kl_ctl": self.kl_ctl.state_dict()}
        return self.state.save(self.workers, extra)

    def _maybe_resume(self) -> None:
        resumed = self.state.resume(self.workers)
        if resumed is None:
            return
        trainer_state, rows = resumed
        self.prompts.next_uid = int(trainer_state["next_uid"])
        self.kl_ctl.load_state_dict(trainer_state["kl_ctl"])
        # the start-of-run validation (the "before" of the report) was logged at step 0
        for r in rows:
            if r["step"] == 0:
                self.initial_val.update({k: v for k, v in r.items() if k.startswith("val/")})

    def _where(self, phase: str = "") -> str:
        where = f"step {self.state.step}/{self.total_steps}"
        return f"{where} · {phase}" if phase else where

    @contextlib.contextmanager
    def _progress(self):
        """A step bar with ETA whose description names the phase running now."""
        cols = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        with Progress(*cols, console=self.console, disable=not self.cfg.trainer.progress) as bar:
            yield bar, bar.add_task(self._where(), total=self.total_steps)

    def shutdown(self) -> None:
        self.state.close()
        self.reward.close()
        self.workers.kill()
        self.pool.remove()
