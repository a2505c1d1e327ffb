"""Task backends: per-item scores of a model on a task's items. The core ships `native` (JSONL + transformers)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from mergekit_evo.config import TaskConfig
from mergekit_evo.errors import UserError
from mergekit_evo.fingerprint import json_hash
from mergekit_evo.hookspecs import hookimpl
from mergekit_evo.items import Item, read_items
from mergekit_evo.merging import LoadedModel


class TaskBackend(ABC):
    """One task of a run: a fixed, ordered list of search items, scored per item (1 = right, 0 = wrong, or a
    graded score in [0, 1]). Subclass and register the class with `register_task_backends`.

    The run builds one per task as `cls(config=task_config)` (a `TaskConfig`; backend-specific settings are in
    `config.options`) before any model is loaded: refuse bad settings there with a `UserError`. Estimators choose
    item indices into `item_ids`; a backend must score exactly those, in that order, so that a cheap estimator
    really costs only the items it asks for.
    """

    def __init__(self, *, config: TaskConfig):
        self.config = config

    @property
    @abstractmethod
    def item_ids(self) -> list[str]:
        """The ids of the search items, in a fixed order."""

    @abstractmethod
    def score(self, model: LoadedModel, indices: Sequence[int]) -> np.ndarray:
        """One score per item at `indices` (into `item_ids`), in that order."""

    def score_heldout(self, model: LoadedModel) -> np.ndarray | None:
        """Scores on the held-out items, or None when the task has none."""
        return None

    def score_validation(self, model: LoadedModel) -> np.ndarray | None:
        """Scores on the validation items (which choose the final merge among the top candidates), or None."""
        return None

    def fingerprint(self) -> dict[str, str]:
        """Hashes of what the task scores, by name ('search items', 'held-out items'), kept with the run so `resume`
        refuses items that changed under it. The base hashes the item ids in order; a backend that can read its items'
        content should hash that too, so an edited answer is caught."""
        return {"search items": json_hash(self.item_ids)}


class NativeTask(TaskBackend):
    """JSONL items scored with plain transformers: multiple choice by log-likelihood, or greedy exact match."""

    def __init__(self, *, config: TaskConfig):
        super().__init__(config=config)
        if config.items is None:
            raise UserError(f"tasks.{config.name}.items: the native backend needs a JSONL file of items")
        self.items = read_items(config.items, config.mode)
        self.test_items = read_items(config.test_items, config.mode) if config.test_items else None
        self.validation_items = read_items(config.validation_items, config.mode) if config.validation_items else None

    @property
    def item_ids(self) -> list[str]:
        return [item.id for item in self.items]

    def fingerprint(self) -> dict[str, str]:
        hashes = {"search items": json_hash([item.to_json() for item in self.items])}
        if self.test_items:
            hashes["held-out items"] = json_hash([item.to_json() for item in self.test_items])
        return hashes

    def score(self, model: LoadedModel, indices: Sequence[int]) -> np.ndarray:
        # torch and transformers are imported when a task first scores, not when the plugin is listed
        from mergekit_evo.native_scoring import score_items

        chosen = [self.items[i] for i in indices]
        return score_items(model.model, model.tokenizer, chosen, self.config.mode, self.config.batch_size)

    def score_heldout(self, model: LoadedModel) -> np.ndarray | None:
        return self._score_all(model, self.test_items)

    def score_validation(self, model: LoadedModel) -> np.ndarray | None:
        return self._score_all(model, self.validation_items)

    def _score_all(self, model: LoadedModel, items: list[Item] | None) -> np.ndarray | None:
        if not items:
            return None
        from mergekit_evo.native_scoring import score_items

        return score_items(model.model, model.tokenizer, items, self.config.mode, self.config.batch_size)


@hookimpl
def register_task_backends(register):
    register("native", NativeTask)
