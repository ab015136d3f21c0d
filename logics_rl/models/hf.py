"""Files of a HF model directory besides the weights: the tokenizer and generation config,
copied next to exported weights so the directory loads in transformers and vLLM on its own."""

from __future__ import annotations

import os
import shutil

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "generation_config.json",
)


def copy_tokenizer_files(src: str, dst: str) -> None:
    """Copy the tokenizer (and generation config) of model directory ``src`` into ``dst``."""
    for name in TOKENIZER_FILES:
        f = os.path.join(src, name)
        if os.path.exists(f):
            shutil.copy(f, os.path.join(dst, name))


def save_model_files(hf_config, model_path: str, out_dir: str) -> None:
    """The config and tokenizer of a model directory: what export needs besides the weights."""
    os.makedirs(out_dir, exist_ok=True)
    hf_config.save_pretrained(out_dir)
    copy_tokenizer_files(model_path, out_dir)
