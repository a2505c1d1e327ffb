"""A validation split carved out of a task's search items (`validation: 0.2`), for any task backend.

Choosing the final merge by the same items the search optimised overfits them: the search winner is, in part, the
candidate that was luckiest on those items. Holding back a share of the search items, never shown to the optimizer,
gives an honest second opinion on the top candidates. The held-back items are drawn from the run's seed and the task's
name, so a resumed run holds back the same ones, and `selection.json` records them.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from mergekit_evo.merge.base import LoadedModel
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.scoring.tasks import TaskBackend
from mergekit_evo.store.fingerprint import json_hash


class HeldBack(TaskBackend):
    """A task whose search items lack a seeded share, which becomes its validation items."""

    def __init__(self, inner: TaskBackend, share: float, seed: int):
        super().__init__(config=inner.config)
        self.inner = inner
        ids = inner.item_ids
        n_validation = int(round(share * len(ids)))
        if not 1 <= n_validation < len(ids):
            raise UserError(
                f"tasks.{inner.config.name}.validation: {share} of {len(ids)} search items leaves no "
                "validation or no search items; use a share that holds back at least one item of each"
            )
        rng = np.random.default_rng([seed, zlib.crc32(inner.config.name.encode())])
        held = set(int(i) for i in rng.choice(len(ids), size=n_validation, replace=False))
        self.validation_positions = sorted(held)
        self.search_positions = [i for i in range(len(ids)) if i not in held]

    @property
    def item_ids(self) -> list[str]:
        ids = self.inner.item_ids
        return [ids[i] for i in self.search_positions]

    @property
    def validation_ids(self) -> list[str]:
        ids = self.inner.item_ids
        return [ids[i] for i in self.validation_positions]

    def score(self, model: LoadedModel, indices: Sequence[int]) -> np.ndarray:
        return self.inner.score(model, [self.search_positions[i] for i in indices])

    def score_heldout(self, model: LoadedModel) -> np.ndarray | None:
        return self.inner.score_heldout(model)

    def score_validation(self, model: LoadedModel) -> np.ndarray | None:
        return self.inner.score(model, self.validation_positions)

    def fingerprint(self) -> dict[str, str]:
        return {**self.inner.fingerprint(), "validation items": json_hash(self.validation_ids)}


def with_validation(task: TaskBackend, seed: int) -> TaskBackend:
    """The task as the run sees it: with its validation share held back when its config asks for one."""
    share = task.config.validation
    return task if share is None else HeldBack(task, share, seed)
