"""Benchmarks an optimizer plugin's tests run: does it beat random search, cover a front, resume exactly?

Cheap stand-ins for a merge's fitness (distances to hidden targets in the unit cube), driven the way a run drives
an optimizer, so two optimizers compare at the same budget in a second. No pytest needed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mergekit_evo.run.optimizers import Optimizer, tell


def maximize(
    optimizer: Optimizer,
    objective: Callable[[np.ndarray], np.ndarray],
    evaluations: int,
    items: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[float]:
    """Drive an optimizer on a plain function of the unit cube, as a run would: for tests and benchmarks of plugins.

    `objective` maps one point to its objective vector (NaN for a failure); `items`, one point to its per-item
    scores, told to optimizers that want them (`wants_item_scores`). Returns the best first objective after each
    evaluation, so two optimizers can be compared at the same budget.
    """
    trace: list[float] = []
    best = -np.inf
    while len(trace) < evaluations:
        xs = np.clip(np.asarray(optimizer.ask(), dtype=float), 0.0, 1.0)
        fitness = np.array([np.atleast_1d(objective(x)) for x in xs], dtype=float)
        _tell(optimizer, xs, fitness, items)
        for f in fitness[:, 0]:
            best = max(best, f) if np.isfinite(f) else best
            trace.append(best)
    return trace[:evaluations]


def _tell(optimizer: Optimizer, xs: np.ndarray, fitness: np.ndarray, items) -> None:
    if getattr(optimizer, "wants_item_scores", False):
        if items is None:
            raise ValueError(f"{type(optimizer).__name__} learns from per-item scores; pass `items`")
        tell(optimizer, xs, fitness, lambda: np.array([items(x) for x in xs], dtype=float))
    else:
        optimizer.tell(xs, fitness)


def _targets(dim: int, seed: int, n_objectives: int):
    return np.random.default_rng(1000 + seed).uniform(0.1, 0.9, (n_objectives, dim))


def distance_objective(dim: int, seed: int, n_objectives: int = 1):
    """A cheap stand-in for merge fitness: minus the squared distance to hidden targets, one per objective.

    With two or more objectives the targets differ, so the objectives conflict and there is a real Pareto front.
    """
    targets = _targets(dim, seed, n_objectives)
    return lambda x: -((np.asarray(x)[None, :] - targets) ** 2).sum(axis=1)


def coordinate_items(dim: int, seed: int):
    """`distance_objective` (one objective) as per-item scores: item j is how close coordinate j is to its target,
    1 - (x_j - t_j)^2, so the objective is their sum minus `dim`. An optimizer that learns from items (M2N2) sees
    which parent is good at which coordinate."""
    target = _targets(dim, seed, 1)[0]
    return lambda x: 1.0 - (np.asarray(x) - target) ** 2


def final_best(
    optimizer_cls, dim: int, evaluations: int, seed: int, population: int = 8, options: dict | None = None
) -> float:
    """The best value an optimizer finds on `distance_objective` within the budget: one number to compare."""
    optimizer = optimizer_cls(
        dim=dim, n_objectives=1, seed=seed, population=population, options=options or {}, x0=np.full(dim, 0.5)
    )
    return maximize(optimizer, distance_objective(dim, seed), evaluations, coordinate_items(dim, seed))[-1]


def hypervolume_2d(points, reference=(-2.0, -2.0)) -> float:
    """The area two maximised objectives' points dominate above `reference`: how good a whole front is."""
    from mergekit_evo.rank.pareto import non_dominated

    points = np.asarray(points, dtype=float)
    points = points[(points > np.asarray(reference)).all(axis=1)]
    if len(points) == 0:
        return 0.0
    front = points[non_dominated(points)]
    front = front[np.argsort(-front[:, 0])]
    area, floor = 0.0, reference[1]
    for x, y in front:
        area += (x - reference[0]) * (y - floor)
        floor = y
    return float(area)


def front_quality(
    optimizer_cls, dim: int, evaluations: int, seed: int, population: int = 16, options: dict | None = None
) -> float:
    """The hypervolume of every point an optimizer tried on the two-objective `distance_objective`, as a share of
    the box between the two targets' extremes (reference point: each objective's value at the other's optimum).
    """
    targets = _targets(dim, seed, 2)
    extent = float(((targets[0] - targets[1]) ** 2).sum())
    objective = distance_objective(dim, seed, 2)
    seen = []

    def record(x):
        value = objective(x)
        seen.append(value)
        return value

    optimizer = optimizer_cls(
        dim=dim, n_objectives=2, seed=seed, population=population, options=options or {}, x0=np.full(dim, 0.5)
    )
    maximize(optimizer, record, evaluations)
    return hypervolume_2d(seen, (-extent, -extent)) / extent**2


def asks_after_resume(make, objective, generations: int, resume_at: int, items=None):
    """Every generation an optimizer asks for, once uninterrupted and once resumed at `resume_at` as a run resumes.

    `make()` builds the optimizer (the same arguments each time). A run stores no optimizer: on resume it builds a
    new one and replays the recorded generations through it (ask, then tell the recorded fitness), so the new one
    must ask exactly what the first did. numpy's global random state is churned before the replay, as other code in
    the process would. Both lists must be equal for the optimizer to be resumable.
    """

    def step(opt):
        xs = opt.ask()
        _tell(opt, xs, np.array([np.atleast_1d(objective(x)) for x in xs]), items)
        return xs

    np.random.seed(0)
    first = make()
    straight = [step(first) for _ in range(generations)]
    np.random.seed(12345)  # an optimizer drawing from numpy's global state would now ask other candidates
    np.random.random(1000)
    replayed = make()
    resumed = [step(replayed) for _ in range(generations)]
    return straight[resume_at:], resumed[resume_at:]
