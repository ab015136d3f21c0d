"""RL prompt datasets: the row schema, chat templating, length filtering, resumable sampling.

Row schema (jsonl / json / parquet / datasets directory)::

    {"prompt": "What is 2+3? Put the answer in \\boxed{}.",   # or "messages": [{"role": ..., "content": ...}]
     "ground_truth": "5",
     "data_source": "arith",                                 # optional, for per-source metrics
     "extras": {...}}                                        # optional, passed to rewards

The prompt is rendered with the tokenizer's chat template (``add_generation_prompt``); prompts
longer than ``max_prompt_length`` tokens are dropped and counted. Any malformed row stops the run
before training with the file and row number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from logics_rl.data.files import DataError, check_messages, read_rows
from logics_rl.protocol import Batch


@dataclass
class PromptRecord:
    prompt_ids: list[int]
    prompt: str  # rendered text (what the model sees)
    ground_truth: Any
    data_source: str
    extras: dict = field(default_factory=dict)


def _messages_of(
    row: dict[str, Any], where: str, system_prompt: str | None
) -> list[dict[str, str]]:
    if "messages" in row and row["messages"] is not None:
        msgs = check_messages(row["messages"], where)
        if msgs[-1]["role"] != "user":
            raise DataError(f"{where}: the last message of an RL prompt must be from the user")
        msgs = list(msgs)
    elif isinstance(row.get("prompt"), str):
        if not row["prompt"].strip():
            raise DataError(f"{where}: 'prompt' is empty")
        msgs = [{"role": "user", "content": row["prompt"]}]
    else:
        raise DataError(
            f"{where}: needs a string 'prompt' or a list 'messages' (keys: {sorted(k for k in row if k != '_row')})"
        )
    if system_prompt and msgs[0]["role"] != "system":
        msgs = [{"role": "system", "content": system_prompt}, *msgs]
    return msgs


def load_prompts(
    files: list[str],
    tokenizer,
    *,
    max_prompt_length: int,
    apply_chat_template: bool = True,
    system_prompt: str | None = None,
) -> tuple[list[PromptRecord], dict[str, int]]:
    """Validate and tokenise every row of ``files``; returns records and counts (``too_long``)."""
    records: list[PromptRecord] = []
    counts = {"rows": 0, "too_long": 0}
    for path in files:
        for i, row in enumerate(read_rows(path), start=1):
            where = f"{path} row {row.pop('_row', i)}"
            counts["rows"] += 1
            msgs = _messages_of(row, where, system_prompt)
            if "ground_truth" not in row or row["ground_truth"] is None:
                raise DataError(f"{where}: missing 'ground_truth'")
            source = row.get("data_source") or "default"
            if not isinstance(source, str):
                raise DataError(f"{where}: 'data_source' must be a string")
            extras = row.get("extras") or {}
            if not isinstance(extras, dict):
                raise DataError(f"{where}: 'extras' must be an object")
            if apply_chat_template:
                text = tokenizer.apply_chat_template(
                    msgs, tokenize=False, add_generation_prompt=True
                )
            else:
                text = "\n".join(m["content"] for m in msgs)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) > max_prompt_length:
                counts["too_long"] += 1
                continue
            records.append(PromptRecord(ids, text, row["ground_truth"], source, extras))
    if not records:
        raise DataError(
            f"no usable prompts in {files} ({counts['too_long']} longer than {max_prompt_length} tokens)"
        )
    return records, counts


class PromptSampler:
    """Epochs of shuffled prompts with a position that is saved and restored for exact resume."""

    def __init__(self, size: int, *, seed: int, shuffle: bool = True):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.epoch, self.pos = 0, 0
        self._order = self._make_order()

    def _make_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def take(self, k: int) -> list[int]:
        """The next ``k`` indices, continuing into the next epoch when this one runs out."""
        out: list[int] = []
        while len(out) < k:
            if self.pos == self.size:
                self.epoch += 1
                self.pos = 0
                self._order = self._make_order()
            n = min(k - len(out), self.size - self.pos)
            out.extend(int(i) for i in self._order[self.pos : self.pos + n])
            self.pos += n
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        size = int(state.get("size", self.size))
        if size != self.size:
            # The order is a permutation of the dataset size: with other data it is another
            # order, and the position may point past the end.
            raise DataError(
                f"cannot resume the data order: the checkpoint was taken over {size} rows, this "
                f"run has {self.size} (the data files or the length limit changed); resume with "
                "the same data, or start over (trainer.resume=never)"
            )
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._make_order()


def to_batch(records: list[PromptRecord], pad_id: int, width: int, uid_start: int = 0) -> Batch:
    """Left-padded prompts of a fixed width (the same on every rank) plus metadata columns."""
    ids = torch.full((len(records), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(records), width, dtype=torch.bool)
    for i, r in enumerate(records):
        n = len(r.prompt_ids)
        ids[i, width - n :] = torch.tensor(r.prompt_ids)
        mask[i, width - n :] = True
    return Batch.from_dict(
        {"prompt_ids": ids, "prompt_mask": mask},
        {
            "prompt": [r.prompt for r in records],
            "ground_truth": [r.ground_truth for r in records],
            "data_source": [r.data_source for r in records],
            "extras": [r.extras for r in records],
            "uid": list(range(uid_start, uid_start + len(records))),
        },
    )
