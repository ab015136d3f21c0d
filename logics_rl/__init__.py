"""logics-rl: RL post-training of LLMs with verifiable rewards.

Importing the package is cheap: it imports no torch, Ray or vLLM. Submodules load what they need.
"""

__version__ = "0.1.0"
