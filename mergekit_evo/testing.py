"""Test support for mergekit-evo and its plugins: the tiny world as a pytest fixture, and an interrupted run.

A plugin's own tests use it with one line in their conftest.py:

    from mergekit_evo.testing import tiny_world  # noqa: F401  (the fixture)

Importing this module switches the Hugging Face libraries offline: tests never download.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_world() -> Path:
    """The default tiny world, built on first use into the cache (about 3-4 minutes on 2 cores), then reused."""
    import transformers

    from mergekit_evo.tiny_world import ensure_world

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return ensure_world()


def interrupted_copy(run_dir: Path, into: Path, keep: int) -> Path:
    """A copy of a finished run as a kill after its `keep`-th candidate would have left it.

    The candidates log is cut after `keep` records and the results and the optimizer checkpoints written after
    that point are removed, exactly the state an uncatchable kill leaves behind; resuming the copy must then
    propose the same candidates as the original run did.
    """
    from mergekit_evo.runs import RunStore

    shutil.copytree(run_dir, into)
    store = RunStore(into)
    records = store.records()
    if not 0 < keep < len(records):
        raise ValueError(f"keep must be between 1 and {len(records) - 1}")
    kept = records[:keep]
    store.candidates_path.write_text(
        "".join(line + "\n" for line in store.candidates_path.read_text().splitlines()[:keep])
    )
    for checkpoint in (into / RunStore.CHECKPOINTS).glob("gen-*.pkl"):  # killed before the next generation's one
        if int(checkpoint.stem.split("-")[1]) > kept[-1].generation:
            checkpoint.unlink()
    for result in (RunStore.BEST, RunStore.BEST_HELDOUT, RunStore.REPORT, RunStore.PARETO):
        (into / result).unlink(missing_ok=True)
    shutil.rmtree(into / RunStore.PARETO_DIR, ignore_errors=True)
    return into


# ------------------------------------------------------------------------------------------ optimizer plugins


def _targets(dim: int, seed: int, n_objectives: int):
    import numpy as np

    return np.random.default_rng(1000 + seed).uniform(0.1, 0.9, (n_objectives, dim))


def distance_objective(dim: int, seed: int, n_objectives: int = 1):
    """A cheap stand-in for merge fitness: minus the squared distance to hidden targets, one per objective.

    With two or more objectives the targets differ, so the objectives conflict and there is a real Pareto front.
    """
    import numpy as np

    targets = _targets(dim, seed, n_objectives)
    return lambda x: -((np.asarray(x)[None, :] - targets) ** 2).sum(axis=1)


def final_best(
    optimizer_cls, dim: int, evaluations: int, seed: int, population: int = 8, options: dict | None = None
) -> float:
    """The best value an optimizer finds on `distance_objective` within the budget: one number to compare."""
    import numpy as np

    from mergekit_evo.optimizers import maximize

    optimizer = optimizer_cls(
        dim=dim, n_objectives=1, seed=seed, population=population, options=options or {}, x0=np.full(dim, 0.5)
    )
    return maximize(optimizer, distance_objective(dim, seed), evaluations)[-1]


def hypervolume_2d(points, reference=(-2.0, -2.0)) -> float:
    """The area two maximised objectives' points dominate above `reference`: how good a whole front is."""
    import numpy as np

    from mergekit_evo.pareto import non_dominated

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
    import numpy as np

    from mergekit_evo.optimizers import maximize

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


def asks_after_resume(optimizer, objective, generations: int, resume_at: int):
    """Every generation an optimizer asks for, once uninterrupted and once pickled at `resume_at` and restored.

    This is what a run does on resume (the pickle is its checkpoint); numpy's global random state is churned in
    between, as other code in the process would. Both lists must be equal for the optimizer to be resumable.
    """
    import pickle

    import numpy as np

    def step(opt):
        xs = opt.ask()
        opt.tell(xs, np.array([np.atleast_1d(objective(x)) for x in xs]))
        return xs

    straight, resumed = [], []
    for g in range(generations):
        if g == resume_at:
            saved = pickle.dumps(optimizer)
        straight.append(step(optimizer))
    restored = pickle.loads(saved)
    np.random.seed(12345)
    np.random.random(1000)
    resumed = [step(restored) for _ in range(resume_at, generations)]
    return straight[resume_at:], resumed
