"""Engines behind small protocols: train engines (``train/``: FSDP2, Megatron-core) and rollout
engines (``rollout/``: vLLM, HF). ``build_train_engine`` and ``build_rollout_engine`` are the
only places that name an engine class: workers ask for ``actor.engine`` / ``rollout.engine`` by
their config values, and nothing above this package imports vLLM, Megatron or FSDP.
``common.py`` resolves the compute dtype and attention kernel for either kind."""
