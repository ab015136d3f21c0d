"""Trainers and the run skeleton they share.

``stages.py`` runs a config's stages in order (``mode``); ``rl.py`` is the RL loop, ``sft.py``
stage one; ``run_state.py`` the step / sampler / checkpoint / tracking state both keep;
``collector.py`` gathers an RL step's batch (generate, score, filter, refill); ``scoring.py`` and
``validation.py`` are the driver-side reward, filter and evaluation functions; ``setup.py``
prepares the run directory, model, data and worker group.
"""
