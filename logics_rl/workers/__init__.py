"""Worker roles, one class each, every role owning its engine: ``actor.py`` (the trained policy),
``rollout.py`` (generation; also ``RolloutWorker``, the role alone in a group of its own),
``reference.py`` (the frozen initial policy); ``hybrid.py`` composes them in one Ray actor per
device, ``weight_sync.py`` moves and checks the weights between them; ``sft.py`` is stage one's
worker."""
