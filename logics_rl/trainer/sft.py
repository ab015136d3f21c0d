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
from logics_rl.config.schema import Config
from logics_rl.data.prompts import PromptSampler
from logics_rl.data.sft import collate, load_conversations
from logics_rl.tracking import PhaseTimer, Tracker, plot_curves, read_metrics
from logics_rl.trainer.setup import make_pool
from logics_rl.workers.sft import SFTWorker


class SFTTrainer:
    def __init__(self, cfg: Config, model_path: str, run_dir: str, console: Console | None = None):
        from transformers import AutoTokenizer

        from logics_rl.controller import WorkerGroup

        self.cfg, self.run_dir, self.model_path = cfg, run_dir, model_path
        self.console = console or Console()
        s, t = cfg.sft, cfg.trainer
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.train_set, self.data_counts = load_conversations(
            s.train_files, self.tokenizer, s.max_length
        )
        self.val_set = (
            load_conversations(s.val_files, self.tokenizer, s.max_length)[0] if s.val_files else []
        )
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
        self.pool = make_pool(cfg)
        self.workers = WorkerGroup(
            self.pool,
            SFTWorker,
            model_path,
            cfg.actor,
            s.optim,
            self.total_steps,
            t.seed,
            timeout_s=cfg.cluster.call_timeout_s,
        )
        self.workers.init_model()

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
                f"SFT step {self.step}: non-finite loss or gradient; the update was not applied; last good checkpoint: {self.ckpt.latest()}"
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

        return self.ckpt.save(self.step, write)

    def _maybe_resume(self) -> None:
        mode = self.cfg.trainer.resume
        path = None if mode == "never" else (self.ckpt.latest() if mode == "auto" else mode)
        if path is None:
            return
        state = torch.load(os.path.join(path, "trainer_state.pt"), weights_only=False)
        self.workers.load_checkpoint(path)
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["sampler"])
        rows = [r for r in read_metrics(self.tracker.jsonl_path) if r["step"] <= self.step]
        with open(self.tracker.jsonl_path, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        self.console.print(f"resumed SFT from {path} at step {self.step}")

    def shutdown(self) -> None:
        self.workers.kill()
        self.pool.remove()
