"""Files of a HF model directory: the tokenizer and generation config, copied next to exported
weights so the directory loads in transformers and vLLM on its own; and slices of its weights
read straight from the safetensors files (an engine that shards a model reads only its part)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator

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


def write_hf_dir(out_dir: str, state: dict, hf_config, tokenizer_dir: str) -> None:
    """A HF model directory: ``state`` as ``model.safetensors``, the config, the tokenizer
    files of ``tokenizer_dir``."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    save_model_files(hf_config, tokenizer_dir, out_dir)


def save_model_files(hf_config, model_path: str, out_dir: str) -> None:
    """The config and tokenizer of a model directory: what export needs besides the weights."""
    os.makedirs(out_dir, exist_ok=True)
    hf_config.save_pretrained(out_dir)
    copy_tokenizer_files(model_path, out_dir)


@contextlib.contextmanager
def safetensors_slices(model_dir: str) -> Iterator[Callable[..., object]]:
    """``read(name, dim, start, n)``: rows (``dim=0``) or columns (``dim=1``) ``start:start+n``
    of tensor ``name`` of a HF directory's ``model.safetensors`` (or its sharded index), as
    float32, read lazily. A name no file holds is a ``KeyError`` naming the directory."""
    import torch
    from safetensors import safe_open

    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as fh:
            where = json.load(fh)["weight_map"]
    else:
        single = "model.safetensors"
        if not os.path.exists(os.path.join(model_dir, single)):
            raise FileNotFoundError(f"{model_dir}: no model.safetensors (or its index)")
        with safe_open(os.path.join(model_dir, single), framework="pt") as fh:
            where = {k: single for k in fh.keys()}  # noqa: SIM118 (safe_open is no dict)
    handles: dict[str, object] = {}
    with contextlib.ExitStack() as stack:

        def read(name: str, dim: int, start: int, n: int) -> torch.Tensor:
            if name not in where:
                raise KeyError(f"{model_dir}: the weights have no tensor {name!r}")
            f = where[name]
            if f not in handles:
                handles[f] = stack.enter_context(
                    safe_open(os.path.join(model_dir, f), framework="pt")
                )
            view = handles[f].get_slice(name)
            part = view[start : start + n] if dim == 0 else view[:, start : start + n]
            return part.to(torch.float32)

        yield read
