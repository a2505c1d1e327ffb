"""Fitness estimators: which items a candidate is scored on, and how those scores become a fitness estimate.

The core ships `full` (every item) and `subsample` (k random items, drawn once per run from the seed, so every
candidate is judged on the same items and their fitnesses are comparable).
"""

from __future__ import annotations

import zlib
from abc import ABC
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mergekit_evo.estimate.responses import ResponseSource, Scores
from mergekit_evo.plugin.errors import NoOptions, UserError, parse_plugin_options
from mergekit_evo.plugin.hookspecs import hookimpl


class Estimator(ABC):
    """Chooses which items of each task a candidate is scored on, once per run, and turns those scores into an
    estimate of the task's accuracy. Subclass, declare `Options`, register the class with `register_estimators`.

    The run builds it as `cls(options=..., seed=...)` (the user's `estimator.options` mapping, validated against
    `Options`, and the run's seed), calls `check` for each task, `prepare` once, `select` once per task, then
    `estimate` for every candidate. Estimators that learn from data (IRT) score models on whole item sets in
    `prepare`, through the run's `ResponseSource`, and keep what they fit with the run; with `estimator.audit` they
    may also `refit` on the audited candidates. The defaults score every item and average.
    """

    Options: ClassVar[type[BaseModel]] = NoOptions  # a subclass declares its own: `class Options(BaseModel): ...`

    def __init__(self, *, options: dict, seed: int):
        # typed Any: each subclass reads the fields of its own `Options`
        self.options: Any = parse_plugin_options(self.Options, options, "estimator.options")
        self.seed = seed

    def task_rng(self, task: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(task.encode())])

    def check(self, task: str, n_items: int) -> None:
        """Refuse (`UserError`) options that cannot work for a task of `n_items` search items, before the run starts."""

    def prepare(self, source: ResponseSource) -> None:
        """Learn what `select` and `estimate` need; the base estimators need nothing."""

    def select(self, task: str, n_items: int) -> np.ndarray:
        """Indices into the task's `item_ids` every candidate is scored on (the same ones for every candidate)."""
        return np.arange(n_items)

    def estimate(self, task: str, indices: Sequence[int], scores: np.ndarray) -> float:
        """The task's accuracy estimated from one candidate's `scores` on the items at `indices`."""
        return float(np.mean(scores)) if len(scores) else 0.0

    def refit(self, audited: list[Scores]) -> bool:
        """Learn again from what `prepare` learned from plus `audited`: every candidate the run's audit scored on
        all search items so far, in index order. Called at a generation's end when the error on the candidates
        audited since the last fit passes `estimator.audit.refit_error`. Keep `select`'s items (the records must
        stay comparable) and be deterministic (a resumed run refits again from the same data). Return whether the
        estimates changed; the default learns nothing."""
        return False

    def get_state(self) -> Any:
        """What `refit` changed, JSON-able: the run keeps it in every checkpoint, for `set_state` on resume."""
        return None

    def set_state(self, state: Any) -> None:
        """Take back what `get_state` gave, after `prepare`, when a run resumes."""


class FullEstimator(Estimator):
    """Accuracy on every search item: exact, and the most expensive."""


class SubsampleEstimator(Estimator):
    """Accuracy on k items drawn at random once per task (MERGE3's 'random' extraction without IRT)."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        k: int = Field(20, ge=1, description="items per task")

    def check(self, task: str, n_items: int) -> None:
        if self.options.k > n_items:
            raise UserError(
                f"estimator.options.k: {self.options.k} is more than the {n_items} search items of task "
                f"{task}; use at most {n_items}, or the `full` estimator"
            )

    def select(self, task: str, n_items: int) -> np.ndarray:
        return np.sort(self.task_rng(task).choice(n_items, size=self.options.k, replace=False))


@hookimpl
def register_estimators(register):
    register("full", FullEstimator)
    register("subsample", SubsampleEstimator)
