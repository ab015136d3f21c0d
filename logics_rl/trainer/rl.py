"""The RL trainer: one readable loop over generate -> reward -> filter -> update -> sync.

    python -m logics_rl.main --config recipes/dapo_qwen3_8b.yaml

One step (``_train_step``):
  1. sample prompts, generate n samples each, score them, apply the dynamic-sampling filters, and
     generate more batches until ``prompts_per_step`` groups are kept (DAPO; up to
     ``max_gen_batches``, then train on what was kept with a warning, or stop);
  2. old / reference log-probs, only when needed (several mini-batches or epochs, KL);
  3. advantages on the driver (registry estimator), KL reward penalty if configured;
  4. policy update on the workers (policy-loss registry, global loss normalisation);
  5. weight sync into the rollout engine, checked by the parity probe;
  6. metrics, validation every ``val_every`` steps, checkpoint every ``save_every`` steps.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict

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

from logics_rl.algorithms import ADVANTAGES
from logics_rl.algorithms.advantages import AdvantageInput
from logics_rl.algorithms.kl import AdaptiveKLController, FixedKLController, apply_kl_penalty
from logics_rl.checkpoint import CheckpointManager
from logics_rl.config.loader import to_yaml
from logics_rl.config.schema import Config
from logics_rl.data.prompts import PromptSampler, load_prompts, to_batch
from logics_rl.engines.rollout.base import Sampling
from logics_rl.filters import build_filters
from logics_rl.metrics import merge_weighted
from logics_rl.protocol import Batch
from logics_rl.rewards import build_reward
from logics_rl.tracking import PhaseTimer, Tracker, plot_curves, read_metrics
from logics_rl.trainer.scoring import filter_batch, merge_reward_metrics, score_batch
from logics_rl.trainer.setup import report_data, start_workers
from logics_rl.trainer.validation import validation_metrics
from logics_rl.workers.actor import rollout_mismatch
from logics_rl.workers.hybrid import HybridSpec, HybridWorker


class TrainingError(RuntimeError):
    """The run cannot continue (no usable batch, a non-finite update, ...)."""


class RLTrainer:
    def __init__(self, cfg: Config, model_path: str, run_dir: str, console: Console | None = None):
        from transformers import AutoTokenizer

        self.cfg, self.run_dir, self.model_path = cfg, run_dir, model_path
        self.console = console or Console()
        t, r = cfg.trainer, cfg.rollout
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        load = dict(
            max_prompt_length=cfg.data.max_prompt_length,
            apply_chat_template=cfg.data.apply_chat_template,
            system_prompt=cfg.data.system_prompt,
        )
        limit = f"data.max_prompt_length={cfg.data.max_prompt_length} tokens"
        self.train_set, self.data_counts = load_prompts(
            cfg.data.train_files, self.tokenizer, **load
        )
        report_data(self.console, "train prompts", len(self.train_set), self.data_counts, limit)
        self.val_set = []
        if cfg.data.val_files:
            self.val_set, counts = load_prompts(cfg.data.val_files, self.tokenizer, **load)
            report_data(self.console, "validation prompts", len(self.val_set), counts, limit)
        self.prompt_width = max(len(p.prompt_ids) for p in self.train_set + self.val_set)
        self.sampler = PromptSampler(len(self.train_set), seed=t.seed, shuffle=cfg.data.shuffle)
        self.reward = build_reward(cfg.reward)
        self.filters = build_filters(cfg.filters)
        self.world = cfg.cluster.nnodes * cfg.cluster.procs_per_node
        self.total_steps = t.total_steps or max(
            1, math.ceil(t.total_epochs * len(self.train_set) / t.prompts_per_step)
        )
        self.sampling = Sampling(
            n=r.n,
            temperature=r.engine.temperature,
            top_p=r.engine.top_p,
            top_k=r.engine.top_k,
            max_tokens=r.max_response_length,
            stop=list(r.engine.stop),
        )
        kl = cfg.algorithm.kl
        self.kl_ctl = (
            AdaptiveKLController(kl.reward_coef, kl.target, kl.horizon)
            if kl.adaptive
            else FixedKLController(kl.reward_coef)
        )
        self.need_old = t.epochs_per_step > 1 or t.mini_batches_per_step > 1 or kl.reward_coef > 0
        self.need_ref = kl.loss_coef > 0 or kl.reward_coef > 0
        self.step, self.next_uid = 0, 0
        self.initial_val: dict[str, float] = {}
        self.ckpt = CheckpointManager(os.path.join(run_dir, "checkpoints"), t.keep_last)
        self.tracker = Tracker(
            t.loggers,
            run_dir,
            project=t.project,
            name=t.name,
            config=asdict(cfg),
            console=self.console,
        )
        try:
            self.pool, self.workers = self._spawn_workers()
        except BaseException:
            self.tracker.close()
            raise

    def _spawn_workers(self):
        cfg, t = self.cfg, self.cfg.trainer
        spec = HybridSpec(
            model_path=self.model_path,
            train=cfg.actor,
            rollout=cfg.rollout.engine,
            algorithm=cfg.algorithm,
            need_ref=self.need_ref,
            max_model_len=self.prompt_width + cfg.rollout.max_response_length,
            total_steps=self.total_steps * t.mini_batches_per_step * t.epochs_per_step,
            mini_batches=t.mini_batches_per_step,
            epochs=t.epochs_per_step,
            seed=t.seed,
        )
        return start_workers(cfg, HybridWorker, spec)

    # ================================================================== the loop
    def fit(self) -> dict[str, float]:
        t = self.cfg.trainer
        self._maybe_resume()
        final: dict[str, float] = {}  # the held-out metrics of the final policy, if measured
        if t.val_at_start and self.step == 0:
            self.initial_val = self._validate()
            self._log_validation(self.initial_val, 0)
        with self._progress() as (bar, task):
            bar.update(task, completed=self.step)
            while self.step < self.total_steps:
                self.step += 1
                metrics = self._train_step(bar, task)
                if self._due(t.val_every) and self.step < self.total_steps:
                    metrics.update(self._validate())
                self.tracker.log(metrics, self.step)
                bar.update(
                    task, completed=self.step, description=f"step {self.step}/{self.total_steps}"
                )
                if self._due(t.save_every) and self.step < self.total_steps:
                    self._save()
        if t.val_at_end:
            final = self._validate()
            self._log_validation(final, self.step)
        self._save()
        self._finish()
        return final

    def _train_step(self, bar, task) -> dict[str, float]:
        timer = PhaseTimer()
        bar.update(task, description=f"step {self.step}/{self.total_steps} · generate")
        batch, metrics = self._collect_batch(timer)
        if batch is None:
            return {**metrics, **timer.metrics()}
        bar.update(task, description=f"step {self.step}/{self.total_steps} · update")
        with timer("old_logp"):
            batch, m_old = self._old_log_probs(batch)
        with timer("ref_logp"):
            batch = self._ref_log_probs(batch)
        with timer("advantages"):
            batch, m_adv = self._advantages(batch)
        with timer("update"):
            m_upd = self._update(batch)
        with timer("sync"):
            m_sync = self._sync()
        metrics.update({**m_old, **m_adv, **m_upd, **m_sync, **self._batch_metrics(batch)})
        metrics.update(timer.metrics())
        metrics["throughput/gen_tokens_per_s"] = metrics["batch/gen_tokens"] / max(
            timer.seconds["generate"], 1e-9
        )
        metrics["throughput/train_tokens_per_s"] = (
            m_upd.get("actor/tokens", 0.0) * self.world / max(timer.seconds["update"], 1e-9)
        )
        return metrics

    # ================================================================== steps of the loop
    def _next_prompts(self, k: int) -> Batch:
        records = [self.train_set[i] for i in self.sampler.take(k)]
        batch = to_batch(records, self.pad_id, self.prompt_width, uid_start=self.next_uid)
        self.next_uid += k
        batch.meta["temperature"] = self.sampling.temperature
        return batch

    def _collect_batch(self, timer: PhaseTimer) -> tuple[Batch | None, dict[str, float]]:
        """Generate, score and filter until ``prompts_per_step`` groups are kept (DAPO refill)."""
        t, L = self.cfg.trainer, self.cfg.rollout.max_response_length
        target, cap = t.prompts_per_step, t.dynamic_sampling.max_gen_batches
        parts, reward_parts, counts, kept, rounds, gen_tokens = [], [], {}, 0, 0, 0.0
        while kept < target:
            if cap > 0 and rounds >= cap:
                self._cap_reached(kept, target, rounds)
                break
            rounds += 1
            with timer("generate"):
                rollout = self.workers.generate_sequences(self._next_prompts(target), self.sampling)
            gen_tokens += float(rollout["response_mask"].sum())
            with timer("reward"):
                scored = score_batch(rollout, self.reward, L)
                part, fm, k = filter_batch(scored.batch, self.filters, L)
            parts.append(part)
            reward_parts.append((scored.metrics, float(len(rollout))))
            for key, v in fm.items():
                counts[key] = counts.get(key, 0.0) + v
            kept += k
        metrics = {
            **merge_reward_metrics(reward_parts),
            **counts,
            "batch/gen_rounds": float(rounds),
            "batch/gen_tokens": gen_tokens,
        }
        batch = self._trim(Batch.concat(parts), target) if kept else None
        metrics["batch/kept_groups"] = float(min(kept, target))
        return batch, metrics

    def _cap_reached(self, kept: int, target: int, rounds: int) -> None:
        msg = (
            f"step {self.step}: only {kept}/{target} prompt groups survived the filters after "
            f"{rounds} generation batches (trainer.dynamic_sampling.max_gen_batches)"
        )
        if self.cfg.trainer.dynamic_sampling.on_cap == "stop":
            raise TrainingError(msg + "; stopping (on_cap=stop)")
        self.console.print(
            f"[yellow]warning:[/yellow] {msg}; "
            + ("training on what was kept" if kept else "skipping the update")
        )

    def _trim(self, batch: Batch, target_groups: int) -> Batch:
        """The first ``target_groups`` groups, cut to a size every rank x mini-batch divides."""
        seen, rows = set(), []
        for i, uid in enumerate(batch["uid"]):
            if uid not in seen and len(seen) == target_groups:
                break
            seen.add(uid)
            rows.append(i)
        unit = self.world * self.cfg.trainer.mini_batches_per_step
        rows = rows[: len(rows) - len(rows) % unit]
        if not rows:
            raise TrainingError(
                f"step {self.step}: fewer kept samples than {unit} (ranks x mini-batches)"
            )
        return batch[rows]

    def _old_log_probs(self, batch: Batch) -> tuple[Batch, dict[str, float]]:
        """Behaviour-policy log-probs; skipped when on-policy with one update and no KL reward.

        With ``algorithm.old_log_prob: rollout`` the sampler's own log-probs stand in for them.
        """
        if not self.need_old:
            return batch, {}
        if self.cfg.algorithm.old_log_prob == "rollout":
            batch["old_logp"] = batch["rollout_logp"]
            return batch, {}
        out = self.workers.compute_log_prob(batch)
        batch = batch.union(out)
        mask = batch["response_mask"]
        m = rollout_mismatch(batch["old_logp"], batch["rollout_logp"], mask)
        m["actor/entropy"] = float((batch["entropy"] * mask).sum() / mask.sum().clamp(min=1))
        return batch, m

    def _ref_log_probs(self, batch: Batch) -> Batch:
        return batch.union(self.workers.compute_ref_log_prob(batch)) if self.need_ref else batch

    def _advantages(self, batch: Batch) -> tuple[Batch, dict[str, float]]:
        cfg = self.cfg.algorithm
        rewards, metrics = batch["token_rewards"], {}
        if cfg.kl.reward_coef > 0:
            rewards, kl = apply_kl_penalty(
                rewards,
                batch["old_logp"],
                batch["ref_logp"],
                batch["loss_mask"],
                self.kl_ctl.value,
                cfg.kl.estimator,
            )
            self.kl_ctl.update(float(kl), len(batch))
            metrics.update({"kl/reward_kl": float(kl), "kl/reward_coef": self.kl_ctl.value})
        group = torch.as_tensor([int(u) for u in batch["uid"]], dtype=torch.long)
        out = ADVANTAGES.get(cfg.advantage.estimator)(
            AdvantageInput(rewards, batch["loss_mask"], group), cfg.advantage
        )
        batch["advantages"], batch["returns"] = out.advantages_BT, out.returns_BT
        mask = batch["loss_mask"]
        metrics["advantages/mean"] = float(
            (out.advantages_BT * mask).sum() / mask.sum().clamp(min=1)
        )
        metrics["advantages/abs_max"] = float((out.advantages_BT * mask).abs().max())
        return batch, metrics

    def _update(self, batch: Batch) -> dict[str, float]:
        per_rank = self.workers.update_actor(batch)
        out = merge_weighted([(m, 1.0) for m in per_rank])
        bad = [
            k
            for k in ("actor/pg_loss", "actor/grad_norm")
            if k in out and not math.isfinite(out[k])
        ]
        if bad:
            raise TrainingError(
                f"step {self.step}: non-finite {bad} ({ {k: out[k] for k in bad} }); the update was not "
                f"applied; the last good checkpoint is {self.ckpt.latest()}"
            )
        return out

    def _sync(self) -> dict[str, float]:
        per_rank = self.workers.sync_weights()
        out = merge_weighted([(m, 1.0) for m in per_rank])
        out["weight_sync/probe_max_abs_diff"] = max(
            m["weight_sync/probe_max_abs_diff"] for m in per_rank
        )
        return out

    def _batch_metrics(self, batch: Batch) -> dict[str, float]:
        lengths = batch["response_mask"].sum(1).float()
        return {
            "batch/samples": float(len(batch)),
            "response/length_mean": float(lengths.mean()),
            "response/length_max": float(lengths.max()),
            "response/clip_ratio": float(batch["truncated"].float().mean()),
        }

    def _validate(self) -> dict[str, float]:
        if not self.val_set:
            return {}
        r = self.cfg.rollout
        prompts = to_batch(self.val_set, self.pad_id, self.prompt_width)
        prompts.meta["temperature"] = r.val_temperature
        sampling = Sampling(
            n=r.val_k,
            temperature=r.val_temperature,
            top_p=r.val_top_p,
            max_tokens=r.max_response_length,
            stop=list(r.engine.stop),
        )
        t0 = time.perf_counter()
        out = self.workers.generate_sequences(prompts, sampling)
        scored = score_batch(out, self.reward, r.max_response_length)
        metrics = validation_metrics(scored.batch, r.val_k)
        metrics["time/validate"] = time.perf_counter() - t0
        return metrics

    def _log_validation(self, metrics: dict[str, float], step: int) -> None:
        if metrics:  # no validation set: nothing to log
            self.tracker.log(metrics, step)

    # ================================================================== checkpoints, progress
    def _due(self, every: int) -> bool:
        return every > 0 and self.step % every == 0

    def _save(self) -> str:
        def write(tmp: str) -> None:
            self.workers.save_checkpoint(tmp)
            torch.save(self._trainer_state(), os.path.join(tmp, "trainer_state.pt"))
            with open(os.path.join(tmp, "config.yaml"), "w", encoding="utf-8") as fh:
                fh.write(to_yaml(self.cfg))

        return self.ckpt.save(self.step, write)

    def _trainer_state(self) -> dict:
        return {
            "step": self.step,
            "next_uid": self.next_uid,
            "sampler": self.sampler.state_dict(),
            "kl_coef": self.kl_ctl.value,
        }

    def _maybe_resume(self) -> None:
        path = self.ckpt.resume_path(self.cfg.trainer.resume)
        if path is None:
            return
        state = torch.load(os.path.join(path, "trainer_state.pt"), weights_only=False)
        self.sampler.load_state_dict(state["sampler"])  # first: fails fast if the data changed
        self.workers.load_checkpoint(path)
        self.step, self.next_uid = int(state["step"]), int(state["next_uid"])
        self.kl_ctl.value = float(state["kl_coef"])
        # metrics logged after this checkpoint by an interrupted run are superseded
        rows = [r for r in read_metrics(self.tracker.jsonl_path) if r["step"] <= self.step]
        with open(self.tracker.jsonl_path, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        # the start-of-run validation (the "before" of the report) was logged at step 0
        for r in rows:
            if r["step"] == 0:
                self.initial_val.update({k: v for k, v in r.items() if k.startswith("val/")})
        self.console.print(f"resumed from {path} at step {self.step}")

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
            yield bar, bar.add_task(f"step {self.step}/{self.total_steps}", total=self.total_steps)

    def _finish(self) -> None:
        if self.cfg.trainer.plot:
            plot_curves(
                self.tracker.jsonl_path,
                os.path.join(self.run_dir, "curves.png"),
                title=self.cfg.trainer.name,
            )
        self.tracker.close()

    def shutdown(self) -> None:
        self.tracker.close()  # a run that raised still flushes tensorboard / wandb
        self.workers.kill()
        self.pool.remove()
