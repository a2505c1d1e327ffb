"""The end of a run's search: which candidate becomes best.yaml, decided from the records and the finalists' scores.

Pure functions: the run gathers the finalists' scores on every search item and on the validation items (merging
each finalist once, and keeping the scores in full_search.json and validation.json), then asks `choose`. So the
choice can be tested, and replayed, from data alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mergekit_evo.rank.ranking import estimate_by, leader, ranked
from mergekit_evo.store.runs import CandidateRecord


@dataclass(frozen=True)
class Selection:
    """How the final merge is chosen: the rule (`by`, the audit `guard`), the tasks' weights, how many finalists
    (`top_k`), and whether the estimate was cheap (finalists are then judged on every search item) and whether a
    task has validation items (finalists are then judged on them)."""

    by: str
    guard: bool
    weights: Mapping[str, float]
    top_k: int
    cheap: bool
    validation: bool

    @property
    def needs_finalists(self) -> bool:
        return self.cheap or self.validation

    def score(self, scores: Mapping[str, float]) -> float:
        """Per-task scores under the rule: one task's, or the weighted mean over the tasks given."""
        if self.by != "weighted":
            return scores[self.by]
        weights = {name: w for name, w in self.weights.items() if name in scores}
        return sum(w * scores[name] for name, w in weights.items()) / sum(weights.values())


def finalists(records: list[CandidateRecord], selection: Selection) -> list[CandidateRecord]:
    """The top-k by search score under the rule, each distinct recipe once (by its best-ranked record); none when
    the search winner is the choice (an exact estimate and no validation items)."""
    if not selection.needs_finalists:
        return []
    distinct: dict[str, CandidateRecord] = {}
    for record in ranked(records, selection.by):
        distinct.setdefault(record.merge_yaml, record)
    return list(distinct.values())[: selection.top_k]


def choose(
    records: list[CandidateRecord], selection: Selection, scores: Mapping[int, Mapping[str, Any]]
) -> tuple[CandidateRecord | None, list[dict]]:
    """The final merge and the finalists' table. Without finalists, the leader (what best.yaml held during the
    search). Otherwise each finalist's full score on every search item replaces its estimate (a cheap estimate), and
    the best on validation wins (when a task has validation items), ties to the better search score, then to the
    earlier candidate. `scores` holds, by finalist index, `full_search` and/or `validation`: per task, the item
    scores."""
    if not selection.needs_finalists:
        return leader(records, selection.by, selection.guard), []
    chosen = finalists(records, selection)
    if not chosen:
        return None, []
    table: list[dict[str, Any]] = []
    for record in chosen:
        given = scores[record.index]
        search = {name: task["estimate"] for name, task in record.tasks.items()}
        entry: dict[str, Any] = {"index": record.index, "search": estimate_by(record, selection.by)}
        if selection.cheap:
            search = {name: float(np.mean(v)) for name, v in given["full_search"].items()}
            entry["full_search"] = search
            entry["full_fitness"] = selection.score(search)
        if selection.validation:
            means = {name: float(np.mean(v)) for name, v in given["validation"].items()}
            entry["validation"] = means
            entry["validation_fitness"] = selection.score({**search, **means})
        table.append(entry)
    first = "validation_fitness" if selection.validation else "full_fitness"
    second = "full_fitness" if selection.cheap else "search"
    winner = max(table, key=lambda f: (f[first], f[second], -f["index"]))
    return next(r for r in chosen if r.index == winner["index"]), table
