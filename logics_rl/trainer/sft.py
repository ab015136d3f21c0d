"""Stage one: supervised fine-tuning on chat conversations (loss on assistant tokens only).

    python -m logics_rl.main --config recipes/X.yaml mode=sft

Each step takes ``sft.batch_size`` conversations (shuffled epochs, resumable), splits them over the
data-parallel ranks, and the engine cuts each rank's part into token-budget micro-batches; the
loss is normalised by the assistant tokens of the whole step, so the update does not depend on the
split. Validation loss every ``sft.val_every`` steps and at the end; checkpoints, exact resume and
HF export are shared with the RL trainer.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict

import torch
from rich.console import Console

from logics_rl.checkpoint import CheckpointManager
from logics_rl.config.loader import to_yaml
from logics_rl.config.schema import Config
from logics_rl.data.prompts import PromptSampler
from logics_rl.data.sft import collate, load_conversations
from logics_rl.tracking import PhaseTimer, Tracker, plot_curves, read_metrics
from logics_rl.trainer.setup import report_data, start_workers
from logics_rl.workers.sft import SFTWorker


class SFTTrainer:
    def __init__(self, cfg: Config, model_path: str, run_dir: str, console: Console | None = None):
        from transformers import AutoTokenizer

        self.cfg, self.run_dir, self.model_path = cfg, run_dir, model_path
        self.console = console or Console()
        s, t = cfg.sft, cfg.trainer
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        limit = f"sft.max_length={s.max_length} tokens"
        self.train_set, self.data_counts = load_conversations(
            s.train_files, self.tokenizer, s.max_length
        )
        report_data(self.console, "SFT conversations", len(self.train_set), self.data_counts, limit)
        self.val_set = []
        if s.val_files:
            self.val_set, counts = load_conversations(s.val_files, self.tokenizer, s.max_length)
            report_data(self.console, "SFT validation", len(self.val_set), counts, limit)
        self.world = cfg.cluster.nnodes * cfg.cluster.procs_per_node
        if s.batch_size % self.world:
            raise ValueError(
                f"sft.batch_size ({s.batch_size}) must be a multiple of the number of ranks ({self.world})"
            )
        self.total_steps = s.total_steps or max(
            1, math.ceil(s.epochs * len(self.train_set) / s.batch_size)
        )
        self.sampler = PromptSampler(len(self.train_set), seed=t.seed, shuffle=True)
        self.step = 0
        self.ckpt = CheckpointManager(os.path.join(run_dir, "checkpoints"), t.keep_last)
        self.tracker = Tracker(
            t.loggers,
            run_dir,
            project=t.project,
            name=f"{t.name}-sft",
            config=asdict(cfg),
            console=self.console,
        )
        try:
            self.pool, self.workers = start_workers(
                cfg, SFTWorker, model_path, cfg.actor, s.optim, self.total_steps, t.seed
            )
        except BaseException:
            self.tracker.close()
            raise

    def fit(self) -> dict[str, float]:
        s = self.cfg.sft
        self._maybe_resume()
        last: dict[str, float] = {}
        while self.step < self.total_steps:
            self.step += 1
            timer = PhaseTimer()
            with timer("update"):
                metrics = self._train_step()
            if s.val_every > 0 and self.step % s.val_every == 0 and self.step < self.total_steps:
                metrics.update(self.validate())
            metrics.update(timer.metrics())
            self.tracker.log(metrics, self.step)
            last = metrics
            if s.save_every > 0 and self.step % s.save_every == 0 and self.step < self.total_steps:
                self._save()
        final = self.validate()
        if final:
            self.tracker.log(final, self.step)
        self._save()
        if self.cfg.trainer.plot:
            plot_curves(
                self.tracker.jsonl_path,
                os.path.join(self.run_dir, "curves.png"),
                title=f"{self.cfg.trainer.name} (SFT)",
            )
        self.tracker.close()
        return {**last, **final}

    def _train_step(self) -> dict[str, float]:
        convs = [self.train_set[i] for i in self.sampler.take(self.cfg.sft.batch_size)]
        batch = collate(convs, self.pad_id)
        tokens = int(batch["loss_mask"].sum())
        per_rank = self.workers.train_step(batch, tokens)
        # each rank reports the mean over its own assistant tokens: weight by them
        out = {
            "sft/loss": sum(m["sft/loss"] * m["loss_tokens"] for m in per_rank)
            / max(1.0, float(tokens)),
            "actor/grad_norm": per_rank[0]["grad_norm"],
            "actor/lr": per_rank[0]["lr"],
            "sft/tokens": float(tokens),
        }
        if not math.isfinite(out["sft/loss"]) or not math.isfinite(out["actor/grad_norm"]):
            raise RuntimeError(
                f"SFT step {self.step}: non-finite loss or gradient; the update was not applied; "
                f"last good checkpoint: {self.ckpt.latest()}"
            )
        return out

    def validate(self) -> dict[str, float]:
        if not self.val_set:
            return {}
        nll, tokens = 0.0, 0.0
        bs = self.cfg.sft.batch_size
        for start in range(0, len(self.val_set), bs):
            for a, b in self.workers.eval_nll(
                collate(self.val_set[start : start + bs], self.pad_id)
            ):
                nll, tokens = nll + a, tokens + b
        return {"val/sft_loss": nll / max(tokens, 1.0)}

    def export_hf(self, path: str) -> str:
        self.workers.export_hf(path)
        return path

    def _save(self) -> str:
        def write(tmp: str) -> None:
            self.workers.save_checkpoint(tmp)
            torch.save(
                {"step": self.step, "sampler": self.sampler.state_dict()},
                os.path.join(tmp, "trainer_state.pt"),
            )
            with open(os.path.join(tmp, "config.yaml"), "w", encoding="utf-8") as fh:
                fh.write(to_yaml(self.cfg))

        return self.ckpt.save(self.step, write)

    def _maybe_resume(self) -> None:
        path = self.ckpt.resume_path(self.cfg.trainer.resume)
        if path is None:
            return
        state = torch.load(os.path.join(path, "trainer_state.pt"), weights_only=False)
        self.sampler.load_state_dict(state["sampler"])  # first: fails fast if the data changed
        self.workers.load_checkpoint(path)
        self.step = int(state["step"])
        rows = [r for r in read_metrics(self.tracker.jsonl_path) if r["step"] <= self.step]
        with open(self.tracker.jsonl_path, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        self.console.print(f"resumed SFT from {path} at step {self.step}")

    def shutdown(self) -> None:
        self.tracker.close()  # a run that raised still flushes tensorboard / wandb
        self.workers.kill()
        self.pool.remove()
