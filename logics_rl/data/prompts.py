"""RL prompt datasets: the row schema, chat templating, length filtering, prompt batches.

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

import torch

from logics_rl.batches import (
    DATA_SOURCE,
    EXTRAS,
    GROUND_TRUTH,
    PROMPT,
    PROMPT_IDS,
    PROMPT_MASK,
    UID,
    PromptBatch,
)
from logics_rl.data.files import DataError, Row, check_messages, load_all
from logics_rl.protocol import Batch


@dataclass
class PromptRecord:
    prompt_ids: list[int]
    prompt: str  # rendered text (what the model sees)
    ground_truth: Any
    data_source: str
    extras: dict = field(default_factory=dict)
    question: str = ""  # the last user turn as written (before the chat template)


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
            f"{where}: needs a string 'prompt' or a list 'messages' (keys: {sorted(row)})"
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
    """Validate and tokenise every row of ``files``; returns records and counts (``too_long``).

    The whole set stays in memory (token ids only): the sampler draws shuffled epochs over it.
    """

    def parse(row: Row) -> PromptRecord:
        return _record(row, tokenizer, apply_chat_template, system_prompt)

    return load_all(files, parse, lambda r: len(r.prompt_ids), max_prompt_length, "prompts")


def _record(
    row: Row, tokenizer, apply_chat_template: bool, system_prompt: str | None
) -> PromptRecord:
    data, where = row.data, row.where
    msgs = _messages_of(data, where, system_prompt)
    if data.get("ground_truth") is None:
        raise DataError(f"{where}: missing 'ground_truth'")
    source = data.get("data_source") or "default"
    if not isinstance(source, str):
        raise DataError(f"{where}: 'data_source' must be a string")
    extras = data.get("extras") or {}
    if not isinstance(extras, dict):
        raise DataError(f"{where}: 'extras' must be an object")
    if apply_chat_template:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n".join(m["content"] for m in msgs)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return PromptRecord(ids, text, data["ground_truth"], source, extras, msgs[-1]["content"])


def to_batch(
    records: list[PromptRecord], pad_id: int, width: int, uid_start: int = 0
) -> PromptBatch:
    """Left-padded prompts of a fixed width (the same on every rank) plus metadata columns;
    prompt ``i`` gets uid ``uid_start + i``."""
    ids = torch.full((len(records), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(records), width, dtype=torch.bool)
    for i, r in enumerate(records):
        n = len(r.prompt_ids)
        ids[i, width - n :] = torch.tensor(r.prompt_ids)
        mask[i, width - n :] = True
    batch = Batch.from_dict(
        {PROMPT_IDS: ids, PROMPT_MASK: mask},
        {
            PROMPT: [r.prompt for r in records],
            GROUND_TRUTH: [r.ground_truth for r in records],
            DATA_SOURCE: [r.data_source for r in records],
            EXTRAS: [r.extras for r in records],
            UID: list(range(uid_start, uid_start + len(records))),
        },
    )
    return PromptBatch(batch)
