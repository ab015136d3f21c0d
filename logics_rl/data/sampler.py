"""``EpochSampler``: shuffled epochs over a dataset's row indices, resumable exactly.

Used for RL prompts and SFT conversations alike: the position (epoch, offset) is part of every
checkpoint, so a resumed run draws the same rows an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np

from logics_rl.data.files import DataError


class EpochSampler:
    """Epochs of shuffled indices with a position that is saved and restored for exact resume."""

    def __init__(self, size: int, *, seed: int, shuffle: bool = True):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.epoch, self.pos = 0, 0
        self._order = self._make_order()

    def _make_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def take(self, k: int) -> list[int]:
        """The next ``k`` indices, continuing into the next epoch when this one runs out."""
        out: list[int] = []
        while len(out) < k:
            if self.pos == self.size:
                self.epoch += 1
                self.pos = 0
                self._order = self._make_order()
            n = min(k - len(out), self.size - self.pos)
            out.extend(int(i) for i in self._order[self.pos : self.pos + n])
            self.pos += n
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        size = int(state.get("size", self.size))
        if size != self.size:
            # The order is a permutation of the dataset size: with other data it is another
            # order, and the position may point past the end.
            raise DataError(
                f"cannot resume the data order: the checkpoint was taken over {size} rows, this "
                f"run has {self.size} (the data files or the length limit changed); resume with "
                "the same data, or start over (trainer.resume=never)"
            )
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._make_order()
