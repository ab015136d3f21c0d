"""The data engine (``mode: curate``): raw question / answer collections in, the SFT and RL sets
of the two training stages out, on Ray Data (local Ray by default, a cluster with
``RAY_ADDRESS``).

Steps, in the order ``curate.stages`` lists them (each also usable alone: ``Step(cfg.curate)
.apply(ray_dataset, ctx)`` returns the rows marked with why they were removed):

    annotate       answer type, verifiable, language, token lengths, optional judge; filters
    dedup          exact and MinHash-LSH near duplicates, one row kept per cluster
    decontaminate  rows sharing a 13-word n-gram with a benchmark file removed
    distill        a teacher's solutions, verified by math-verify (rejection sampling)
    stratify       length-stratified sampling of the solutions

``pipeline.run_curate`` runs them with caching and reports; ``rows`` describes the row table.
"""

from logics_rl.curate.pipeline import read_kept, run_curate

__all__ = ["read_kept", "run_curate"]
