"""Data: the streaming row reader (``files.py``), RL prompt sets (``prompts.py``), SFT
conversations (``sft.py``) and the generated arithmetic task (``synthetic.py``)."""
