"""Training engines behind ``base.TrainEngine``: FSDP2 (``fsdp.py``)."""
