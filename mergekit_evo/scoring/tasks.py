"""Task backends: per-item scores of a model on a task's items. The core ships `native` (JSONL + transformers)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mergekit_evo.config import TaskConfig
from mergekit_evo.merge.base import LoadedModel
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.plugin.hookspecs import hookimpl
from mergekit_evo.scoring.items import read_items
from mergekit_evo.store.fingerprint import json_hash

if TYPE_CHECKING:
    from mergekit_evo.scoring.native import EncodedItems


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
        self._encoded: dict[tuple[str, str], EncodedItems] = {}

    @property
    def item_ids(self) -> list[str]:
        return [item.id for item in self.items]

    def fingerprint(self) -> dict[str, str]:
        hashes = {"search items": json_hash([item.to_json() for item in self.items])}
        if self.test_items:
            hashes["held-out items"] = json_hash([item.to_json() for item in self.test_items])
        return hashes

    def encoded(self, tokenizer, split: str = "items") -> EncodedItems:
        """The items of `split` ('items', 'validation_items' or 'test_items') as token ids, encoded once per run for
        each tokenizer: candidates share the base tokenizer, so every candidate reuses the first encoding."""
        # torch and transformers are imported when a task first scores, not when the plugin is listed
        from mergekit_evo.scoring.native import encode_items, tokenizer_key

        key = (tokenizer_key(tokenizer), split)
        if key not in self._encoded:
            self._encoded[key] = encode_items(tokenizer, getattr(self, split), self.config.mode)
        return self._encoded[key]

    def score(self, model: LoadedModel, indices: Sequence[int]) -> np.ndarray:
        from mergekit_evo.scoring.native import score_encoded

        encoded = self.encoded(model.tokenizer)
        return score_encoded(model.model, model.tokenizer, encoded, list(indices), self.config.batch_size)

    def score_heldout(self, model: LoadedModel) -> np.ndarray | None:
        return self._score_all(model, "test_items")

    def score_validation(self, model: LoadedModel) -> np.ndarray | None:
        return self._score_all(model, "validation_items")

    def _score_all(self, model: LoadedModel, split: str) -> np.ndarray | None:
        if not getattr(self, split):
            return None
        from mergekit_evo.scoring.native import score_encoded

        encoded = self.encoded(model.tokenizer, split)
        return score_encoded(model.model, model.tokenizer, encoded, None, self.config.batch_size)


@hookimpl
def register_task_backends(register):
    register("native", NativeTask)
