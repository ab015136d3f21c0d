"""Trainers: ``rl.py`` (the RL loop), ``sft.py`` (stage one), ``pipeline.py`` (SFT then RL)."""
