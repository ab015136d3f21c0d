"""Stage one: supervised fine-tuning on chat conversations (loss on assistant tokens only).

    python -m logics_rl.main --config recipes/X.yaml mode=sft

Each step takes ``sft.batch_size`` conversations (shuffled epochs, resumable), splits them over the
data-parallel ranks, and the engine cuts each rank's part into token-budget micro-batches; the
loss is normalised by the assistant tokens of the whole step, so the update does not depend on the
split. Validation loss every ``sft.val_every`` steps and at the end; checkpoints, exact resume and
tracking go through the same ``RunState`` as the RL trainer.
"""

from __future__ import annotations

import math

from rich.console import Console

from logics_rl.batches import LOSS_MASK
from logics_rl.config.schema import Config
from logics_rl.data.sampler import EpochSampler
from logics_rl.data.sft import collate, load_conversations
from logics_rl.tracking import PhaseTimer
from logics_rl.trainer.run_state import RunState
from logics_rl.trainer.setup import report_data, start_workers
from logics_rl.workers.rollout import pad_id_of
from logics_rl.workers.sft import NLL, TOKENS, SFTWorker


class SFTTrainer:
    """The SFT stage: a loop of train steps over shuffled conversations."""

    def __init__(self, cfg: Config, model_path: str, run_dir: str, console: Console | None = None):
        from transformers import AutoTokenizer

        self.cfg, self.run_dir, self.model_path = cfg, run_dir, model_path
        self.console = console or Console()
        s, t = cfg.sft, cfg.trainer
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = pad_id_of(self.tokenizer)
        self.train_set, self.val_set = self._load_data()
        self.total_steps = s.total_steps or max(
            1, math.ceil(s.epochs * len(self.train_set) / s.batch_size)
        )
        sampler = EpochSampler(len(self.train_set), seed=t.seed, shuffle=True)
        self.state = RunState(cfg, run_dir, sampler, name=f"{t.name}-sft", console=self.console)
        try:
            self.pool, self.workers = start_workers(
                cfg,
                SFTWorker,
                model_path,
                cfg.actor,
                s.optim,
                self.total_steps,
                t.seed,
                console=self.console,
            )
        except BaseException:
            self.state.close()
            raise

    def _load_data(self):
        s = self.cfg.sft
        limit = f"sft.max_length={s.max_length} tokens"
        train_set, counts = load_conversations(s.train_files, self.tokenizer, s.max_length)
        report_data(self.console, "SFT conversations", len(train_set), counts, limit)
        val_set = []
        if s.val_files:
            val_set, counts = load_conversations(s.val_files, self.tokenizer, s.max_length)
            report_data(self.console, "SFT validation", len(val_set), counts, limit)
        return train_set, val_set

    def fit(self) -> dict[str, float]:
        s, state = self.cfg.sft, self.state
        state.resume(self.workers)  # SFT keeps nothing beyond the RunState and the workers
        last: dict[str, float] = {}
        while state.step < self.total_steps:
            state.step += 1
            timer = PhaseTimer()
            with timer("update"):
                metrics = self._train_step()
            if state.due(s.val_every) and state.step < self.total_steps:
                metrics.update(self.validate())
            metrics.update(timer.metrics())
            state.log(metrics)
            last = metrics
            if state.due(s.save_every) and state.step < self.total_steps:
                state.save(self.workers)
        final = self.validate()
        if final:
            state.log(final)
        state.save(self.workers)
        state.finish(title=f"{self.cfg.trainer.name} (SFT)")
        return {**last, **final}

    def _train_step(self) -> dict[str, float]:
        convs = [self.train_set[i] for i in self.state.sampler.take(self.cfg.sft.batch_size)]
        batch = collate(convs, self.pad_id)
        tokens = int(batch[LOSS_MASK].sum())
        per_rank = self.workers.train_step(batch, tokens)
        # each rank reports the mean over its own assistant tokens: weight by them
        out = {
            "sft/loss": sum(m["sft/loss"] * m["loss_tokens"] for m in per_rank)
            / max(1.0, float(tokens)),
            "actor/grad_norm": per_rank[0]["grad_norm"],
            "actor/lr": per_rank[0]["lr"],
            "sft/tokens": float(tokens),
        }
        skipped = per_rank[0].get("skipped_steps", 0.0)
        self.state.check_finite(out, ("sft/loss", "actor/grad_norm"), skipped)
        return out

    def validate(self) -> dict[str, float]:
        """Token-mean NLL of the assistant tokens of the validation conversations."""
        if not self.val_set:
            return {}
        nll, tokens = 0.0, 0.0
        bs = self.cfg.sft.batch_size
        for start in range(0, len(self.val_set), bs):
            out = self.workers.eval_nll(collate(self.val_set[start : start + bs], self.pad_id))
            nll, tokens = nll + float(out[NLL].sum()), tokens + float(out[TOKENS].sum())
        return {"val/sft_loss": nll / max(tokens, 1.0)}

    def export_hf(self, path: str) -> str:
        self.workers.export_hf(path)
        return path

    def shutdown(self) -> None:
        self.state.close()
        self.workers.kill()
        self.pool.remove()
