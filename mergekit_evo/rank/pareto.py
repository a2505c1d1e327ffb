"""The Pareto front of a multi-objective run: the candidates no other candidate beats on every objective.

Computed from the records, not from the optimizer, so any optimizer's run (random search included) gets the same
front, and a resumed run rebuilds it from what it recorded.
"""

from __future__ import annotations

import numpy as np

from mergekit_evo.store.runs import CandidateRecord, RunStore


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Mask of the rows no other row dominates (>= on every column, > on one); all columns are maximised."""
    points = np.asarray(points, dtype=float)
    at_least = (points[:, None, :] >= points[None, :, :]).all(axis=2)
    better = (points[:, None, :] > points[None, :, :]).any(axis=2)
    dominated_by = at_least & better  # [i, j]: row i dominates row j
    return np.asarray(~dominated_by.any(axis=0))


def pareto_front(records: list[CandidateRecord]) -> list[CandidateRecord]:
    """Non-dominated scored candidates, ordered by the first objective.

    Candidates with the very same objective values (on a few hundred items, ties are common) are listed once, the
    earliest: a front of distinct trade-offs, not of near-identical recipes.
    """
    unique: dict[tuple[float, ...], CandidateRecord] = {}
    for r in records:
        if r.ok and r.objectives is not None:
            unique.setdefault(tuple(r.objectives), r)
    if not unique:
        return []
    points = list(unique)
    mask = non_dominated(np.array(points))
    front = [(point, unique[point]) for point, keep in zip(points, mask) if keep]
    return [r for _, r in sorted(front, key=lambda pr: (-pr[0][0], pr[1].index))]


def write_front(store: RunStore, front: list[CandidateRecord], objective_names: list[str]) -> None:
    """`pareto.jsonl` (one line per member) and `pareto/candidate-NNNN.yaml`, each a plain mergekit recipe."""
    recipes, lines = {}, []
    for r in front:
        name = f"candidate-{r.index:04d}.yaml"
        recipes[name] = r.merge_yaml
        lines.append(
            {
                "index": r.index,
                "objectives": dict(zip(objective_names, r.objectives or [])),
                "fitness": r.fitness,
                "genes": r.genes,
                "yaml": f"{RunStore.PARETO_DIR}/{name}",
            }
        )
    store.write_pareto(recipes, lines)
