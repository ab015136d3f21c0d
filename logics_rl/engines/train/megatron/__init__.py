"""The megatron-core training engine (``actor.engine: megatron``): ``engine.MegatronEngine``.

Needs ``pip install logics-rl[megatron]``; importing this package loads nothing of it (the
engine factory imports ``engine`` only when the config names it).
"""
