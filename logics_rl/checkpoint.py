"""Atomic checkpoints with a retention limit, and the HF export of any checkpoint.

A checkpoint is written into ``checkpoints/.tmp-step_N``, completed with a ``COMPLETE`` marker,
then renamed to ``checkpoints/step_N``: a crash while writing leaves the previous checkpoint the
latest complete one. Contents: the engine's sharded model + optimizer (``dcp/``), scheduler,
per-rank worker state (RNG, sampler counters), the trainer state (step, data position, RNG) and
the resolved config, plus ``hf_config/`` (model config + tokenizer) for export.

    python -m logics_rl.export runs/x/checkpoints/step_40 out_dir    # a HF model directory
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable

COMPLETE = "COMPLETE"
_STEP = re.compile(r"^step_(\d+)$")


class CheckpointManager:
    def __init__(self, root: str, keep_last: int = 2):
        self.root = root
        self.keep_last = keep_last
        os.makedirs(root, exist_ok=True)

    def path_of(self, step: int) -> str:
        return os.path.join(self.root, f"step_{step}")

    def complete(self) -> list[tuple[int, str]]:
        """(step, path) of every complete checkpoint, oldest first."""
        out = []
        for name in os.listdir(self.root):
            m = _STEP.match(name)
            path = os.path.join(self.root, name)
            if m and os.path.exists(os.path.join(path, COMPLETE)):
                out.append((int(m.group(1)), path))
        return sorted(out)

    def latest(self) -> str | None:
        done = self.complete()
        return done[-1][1] if done else None

    def save(self, step: int, write: Callable[[str], None]) -> str:
        """Call ``write(tmp_dir)``, mark it complete, rename it into place, prune old ones."""
        tmp = os.path.join(self.root, f".tmp-step_{step}")
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        write(tmp)
        with open(os.path.join(tmp, COMPLETE), "w") as fh:
            fh.write(f"{step}\n")
        final = self.path_of(step)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        self._prune()
        return final

    def _prune(self) -> None:
        done = self.complete()
        if self.keep_last > 0:
            for _, path in done[: -self.keep_last]:
                shutil.rmtree(path, ignore_errors=True)


def export_checkpoint(ckpt: str, out_dir: str) -> str:
    """Write the model of a checkpoint as a HF directory (single process, no Ray)."""
    import torch
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from logics_rl.engines.train.fsdp import _PackedLM, copy_tokenizer_files

    if not os.path.exists(os.path.join(ckpt, COMPLETE)):
        raise FileNotFoundError(f"{ckpt} is not a complete checkpoint (no {COMPLETE} marker)")
    hf_dir = os.path.join(ckpt, "hf_config")
    config = AutoConfig.from_pretrained(hf_dir)
    wrapper = _PackedLM(AutoModelForCausalLM.from_config(config, dtype=torch.float32))
    state = {"model": wrapper.state_dict()}
    dcp.load(state, checkpoint_id=os.path.join(ckpt, "dcp"))
    wrapper.load_state_dict(state["model"])
    sd = {k: v.contiguous() for k, v in wrapper.lm.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        sd.pop("lm_head.weight", None)
    os.makedirs(out_dir, exist_ok=True)
    save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(out_dir)
    copy_tokenizer_files(hf_dir, out_dir)
    return out_dir
