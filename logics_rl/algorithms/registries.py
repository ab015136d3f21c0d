"""The two algorithm registries: advantage estimators and policy losses.

Third-party code adds to them with the decorator or with an entry point::

    from logics_rl.algorithms import ADVANTAGES

    @ADVANTAGES.register("leave_two_out")
    def leave_two_out(inp: AdvantageInput, *, scale: float = 1.0) -> AdvantageOutput: ...

    # or, in the plugin's packaging metadata:
    # [project.entry-points."logics_rl.advantages"]
    # leave_two_out = "my_pkg.adv:leave_two_out"

The config then names it, with its settings checked against the signature:
``algorithm.advantage.estimator=leave_two_out algorithm.advantage.params.scale=2``.
"""

from __future__ import annotations

from logics_rl.registry import Registry

# fn(AdvantageInput, **params) -> AdvantageOutput
ADVANTAGES = Registry("advantage estimator", entry_point_group="logics_rl.advantages")

# fn(PolicyLossInput, **params) -> PolicyLossOutput
POLICY_LOSSES = Registry("policy loss", entry_point_group="logics_rl.policy_losses")
