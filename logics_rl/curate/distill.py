"""The distill step: a teacher model writes ``k`` solutions per question (rejection sampling).

math-verify checks each against the row's reference answer; ``keep`` chooses which correct ones
become rows (``first``, ``shortest``, or ``all``: one row per correct solution, same ``id``).
Columns added: ``solution`` (the teacher's), ``source_solution`` (the row's own, if any),
``pass_rate`` (correct / k: a difficulty annotation), ``truncated_rate`` (samples that hit
``max_tokens``). A question with no correct solution is dropped with that reason. The teacher is
``distill.teacher`` (an HF directory, or ``tiny`` / ``smollm2``), by default ``model.path``,
served by the rollout engine (``generate.py``).
"""

from __future__ import annotations

from logics_rl.config.loader import to_plain
from logics_rl.config.schema import CurateConfig


class Distill:
    name = "distill"

    def __init__(self, cfg: CurateConfig):
        self.cfg = cfg.distill
        stages = [str(s) for s in cfg.stages]
        after = stages[stages.index("distill") + 1 :] if "distill" in stages else []
        if str(self.cfg.keep) == "all" and "dedup" in after:
            raise ValueError(
                "curate: dedup after distill with distill.keep=all would count a question's "
                "solutions as duplicates of each other; put dedup before distill"
            )

    def settings(self) -> dict:
        return to_plain(self.cfg)

    def apply(self, ds, ctx):
        from logics_rl.curate.generate import distill

        return distill(ds, self.cfg, ctx), {"teacher": ctx.model_path(self.cfg.teacher)}
