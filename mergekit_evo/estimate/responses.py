"""Whole-item-set responses for estimators that learn from data (IRT): the input models and sample merges.

An estimator that fits a model of the items (MERGE3's IRT) needs per-item scores of several models on every search
item before the search starts. The run provides them through `RunResponses`: each scored model is appended and
fsynced to the run's `responses.jsonl` as soon as it is scored, so a killed run resumes without scoring
it again, and the estimator can keep what it fitted beside it (`estimator/NAME.json`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm

from mergekit_evo.store.runs import RunStore

Scores = dict[str, np.ndarray]  # task name -> one score per item of its search split, in item order


class ResponseSource(ABC):
    """What `Estimator.prepare` may ask of the run: whole-item-set scores of input models and of merges.

    Attributes: `item_ids`, the search items of each task in order; `dim`, the genome's dimension (merges are
    asked for as points of [0, 1]^dim); `seed`, the run's seed; `start`, the point the search starts from (the
    genome's start values), where an estimator may calibrate around.
    """

    item_ids: dict[str, list[str]]
    dim: int
    seed: int
    start: np.ndarray

    @abstractmethod
    def inputs(self) -> dict[str, Scores]:
        """Every input model (base included) on every search item, by model reference."""

    @abstractmethod
    def merges(self, points: np.ndarray) -> list[Scores | None]:
        """Merges at these genome points on every search item; None where a merge or its scoring failed."""

    @abstractmethod
    def load(self, name: str) -> Any:
        """What the estimator saved under `name` in this run, or None."""

    @abstractmethod
    def save(self, name: str, data: Any) -> None:
        """Keep JSON-able `data` with the run (atomically), for a resumed run to `load`."""

    @abstractmethod
    def log(self, message: str) -> None:
        """A line for the run's log."""


def point_key(x: np.ndarray) -> str:
    return "merge:" + json.dumps([round(float(v), 6) for v in x])


class RunResponses(ResponseSource):
    """`ResponseSource` over a run: scores through the run's merger and task backends, cached in its directory."""

    def __init__(
        self,
        store: RunStore,
        item_ids: dict[str, list[str]],
        dim: int,
        seed: int,
        score_input: Callable[[str], Scores],
        score_point: Callable[[np.ndarray], Scores],
        refs: list[str],
        start: np.ndarray,
        log: Callable[[str], None] = print,
        progress: bool = True,
    ):
        self.store = store
        self.item_ids, self.dim, self.seed, self.start = item_ids, dim, seed, np.asarray(start, dtype=float)
        self._score_input, self._score_point, self._refs = score_input, score_point, refs
        self._log, self._progress = log, progress
        self._cache = self._read()

    def log(self, message: str) -> None:
        self._log(message)

    def _read(self) -> dict[str, Scores | None]:
        def parse(row: dict) -> tuple[str, Scores | None]:
            tasks = row["tasks"]
            return str(row["key"]), None if tasks is None else {k: np.asarray(v, dtype=float) for k, v in tasks.items()}

        return dict(self.store.read_log(self.store.responses_path, parse).rows)

    def _append(self, key: str, scores: Scores | None, error: str | None = None) -> None:
        row = {"key": key, "tasks": None if scores is None else {k: v.tolist() for k, v in scores.items()}}
        if error:
            row["error"] = error
        self.store.append_response(row)
        self._cache[key] = scores

    def _collect(self, keys: list[str], score: Callable[[int], Scores], what: str) -> list[Scores | None]:
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            n_items = sum(len(v) for v in self.item_ids.values())
            self.log(f"scoring {len(todo)} {what} on all {n_items} search items, for the estimator")
            for i in tqdm(todo, desc=what, disable=not self._progress):
                try:
                    scores = score(i)
                except Exception as e:  # a broken sample merge is left out of the fit, not fatal
                    self._append(keys[i], None, f"{type(e).__name__}: {e}")
                else:
                    self._append(keys[i], scores)
        return [self._cache[k] for k in keys]

    def inputs(self) -> dict[str, Scores]:
        keys = [f"endpoint:{ref}" for ref in self._refs]  # the key responses.jsonl has always used
        scores = self._collect(keys, lambda i: self._score_input(self._refs[i]), "input models")
        missing = [ref for ref, s in zip(self._refs, scores) if s is None]
        if missing:
            raise RuntimeError(f"input model {missing[0]} could not be scored; see {self.store.responses_path}")
        return {ref: s for ref, s in zip(self._refs, scores) if s is not None}

    def merges(self, points: np.ndarray) -> list[Scores | None]:
        points = np.asarray(points, dtype=float)
        keys = [point_key(x) for x in points]
        return self._collect(keys, lambda i: self._score_point(points[i]), "calibration merges")

    def load(self, name: str) -> Any:
        return self.store.estimator_state(name)

    def save(self, name: str, data: Any) -> None:
        self.store.save_estimator_state(name, data)


class StaticResponses(ResponseSource):
    """`ResponseSource` outside a run: given endpoint scores and a function that scores a genome point.

    For benchmarks and tests of estimators; merges are scored on first request and remembered.
    """

    def __init__(
        self,
        item_ids: dict[str, list[str]],
        dim: int,
        seed: int,
        inputs: dict[str, Scores],
        score_point: Callable[[np.ndarray], Scores],
        start: np.ndarray | None = None,
    ):
        self.item_ids, self.dim, self.seed = item_ids, dim, seed
        self.start = np.full(dim, 0.5) if start is None else np.asarray(start, dtype=float)  # default: the centre
        self._inputs, self._score_point = inputs, score_point
        self._merges: dict[str, Scores] = {}
        self._state: dict[str, Any] = {}
        self.messages: list[str] = []

    def inputs(self) -> dict[str, Scores]:
        return self._inputs

    def merges(self, points: np.ndarray) -> list[Scores | None]:
        out: list[Scores | None] = []
        for x in np.asarray(points, dtype=float):
            key = point_key(x)
            if key not in self._merges:
                self._merges[key] = self._score_point(x)
            out.append(self._merges[key])
        return out

    def load(self, name: str) -> Any:
        return self._state.get(name)

    def save(self, name: str, data: Any) -> None:
        self._state[name] = json.loads(json.dumps(data))

    def log(self, message: str) -> None:
        self.messages.append(message)
