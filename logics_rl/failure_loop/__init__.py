"""The failure-driven loop (Logics-STEM): the model's verified failures become targeted data.

``loop.py``        the steps, each cached in the run directory: evaluate -> retrieve ->
                   synthesize -> verify -> filter (the data engine's dedup / decontaminate) -> mix
``synthesize.py``  the synthesizer registry; ``arithmetic.py`` the built-in task's synthesizer
``retrieval.py``   the retriever registry (sentence embeddings + a vector index)
"""
