"""``overlong``: DAPO's soft overlong punishment (Yu et al., arXiv 2503.14476, Eq. 13).

With ``L_max = max_length`` and ``L_cache = cache_length``, for a response of |y| tokens:

    0                                    if |y| <= L_max - L_cache
    ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| < L_max     (0 down to -1)
    -1                                   if |y| >= L_max

times ``penalty_factor`` (verl's name for the scale). It is added to the correctness reward so
answers that ramble into the last ``L_cache`` tokens are pushed back gently instead of getting a
cliff at the limit. DAPO used L_max = 20,480 with L_cache = 4,096; ``cache_length`` defaults to the
same 20% of ``max_length``. Component: ``overlong``.

    >>> from logics_rl.rewards import RewardInput, overlong
    >>> b = RewardInput.build(["a", "b", "c"], response_lengths=[700, 900, 1000], max_response_length=1000)
    >>> overlong(b, cache_length=200).scores
    [0.0, -0.5, -1.0]
"""

from __future__ import annotations

from logics_rl.rewards.base import REWARDS, RewardInput, RewardResult

DEFAULT_CACHE_FRACTION = 0.2  # DAPO: 4,096 of 20,480


@REWARDS.register("overlong")
def overlong(
    batch: RewardInput,
    *,
    max_length: int | None = None,  # L_max in tokens; None: batch.max_response_length
    cache_length: int | None = None,  # L_cache in tokens; None: 20% of max_length
    penalty_factor: float = 1.0,
) -> RewardResult:
    l_max = batch.max_response_length if max_length is None else max_length
    l_cache = int(l_max * DEFAULT_CACHE_FRACTION) if cache_length is None else cache_length
    if l_max <= 0 or not 0 < l_cache <= l_max:
        raise ValueError(
            f"overlong: need 0 < cache_length <= max_length, got cache_length={l_cache}, max_length={l_max}"
        )
    soft_start = l_max - l_cache
    scores = []
    for length in batch.response_lengths:
        if length <= soft_start:
            r = 0.0
        elif length < l_max:
            r = (soft_start - length) / l_cache
        else:
            r = -1.0
        scores.append(r * penalty_factor + 0.0)
    return RewardResult(scores=scores, components={"overlong": list(scores)})


overlong.provides = ("overlong",)
