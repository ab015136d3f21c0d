"""SFT conversations: chat-template tokenisation with a loss mask on assistant tokens only.

Row schema: ``messages`` (a list of ``{"role", "content"}``, any number of turns) or
``prompt`` + ``response`` strings (one user turn and one assistant turn).

The assistant spans are found by rendering the conversation prefix by prefix: the text the
template adds for assistant message i (between "everything before it + generation prompt" and
"everything up to it") is its span; tokens whose characters fall in a span are trained on. This
works with any chat template that renders prefixes consistently, and is checked per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from logics_rl.data.files import DataError, Row, check_messages, load_all
from logics_rl.protocol import Batch


@dataclass
class Conversation:
    input_ids: list[int]
    loss_mask: list[bool]  # per token: is it an assistant token (a training target)?


def _messages(row: dict, where: str) -> list[dict[str, str]]:
    if row.get("messages") is not None:
        msgs = check_messages(row["messages"], where)
        if not any(m["role"] == "assistant" for m in msgs):
            raise DataError(f"{where}: no assistant message to train on")
        return msgs
    if isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str):
        return [
            {"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": row["response"]},
        ]
    raise DataError(
        f"{where}: needs 'messages' or string 'prompt' and 'response' (keys: {sorted(row)})"
    )


def assistant_spans(
    messages: list[dict[str, str]], tokenizer, where: str
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = (
            tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
            if i
            else ""
        )
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not upto.startswith(before) or not text.startswith(upto):
            raise DataError(
                f"{where}: the chat template does not render conversation prefixes consistently"
            )
        end = len(upto.rstrip())
        spans.append((len(before), end))
    return text, spans


def tokenize_conversation(
    messages: list[dict[str, str]], tokenizer, where: str = "conversation"
) -> Conversation:
    text, spans = assistant_spans(messages, tokenizer, where)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = []
    for start, end in enc["offset_mapping"]:
        mask.append(any(s <= start and end <= e and end > start for s, e in spans))
    return Conversation(list(enc["input_ids"]), mask)


def load_conversations(
    files: list[str], tokenizer, max_length: int
) -> tuple[list[Conversation], dict[str, int]]:
    """Validate and tokenise every row; conversations over ``max_length`` tokens are dropped.

    The whole set stays in memory (token ids only): the sampler draws shuffled epochs over it.
    """

    def parse(row: Row) -> Conversation:
        conv = tokenize_conversation(_messages(row.data, row.where), tokenizer, row.where)
        if not any(conv.loss_mask[1:]):
            raise DataError(f"{row.where}: the assistant turns produced no trainable tokens")
        return conv

    return load_all(files, parse, lambda c: len(c.input_ids), max_length, "conversations")


def collate(convs: list[Conversation], pad_id: int) -> Batch:
    """The train-engine layout: the first token as the prompt, the rest as the response;
    ``loss_mask`` marks assistant targets."""
    width = max(len(c.input_ids) for c in convs) - 1
    n = len(convs)
    prompt = torch.tensor([[c.input_ids[0]] for c in convs])
    resp = torch.full((n, width), pad_id, dtype=torch.long)
    rmask = torch.zeros(n, width, dtype=torch.bool)
    lmask = torch.zeros(n, width, dtype=torch.bool)
    for i, c in enumerate(convs):
        k = len(c.input_ids) - 1
        resp[i, :k] = torch.tensor(c.input_ids[1:])
        rmask[i, :k] = True
        lmask[i, :k] = torch.tensor(c.loss_mask[1:])
    return Batch.from_dict(
        {
            "prompt_ids": prompt,
            "prompt_mask": torch.ones_like(prompt, dtype=torch.bool),
            "response_ids": resp,
            "response_mask": rmask,
            "loss_mask": lmask,
        }
    )
