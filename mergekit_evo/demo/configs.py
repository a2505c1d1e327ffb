"""The tiny world's ready-made searches: the demo's cross-skill experiment and the two-skill search of the examples."""

from __future__ import annotations

from pathlib import Path

from mergekit_evo.demo.tiny_world import task_file
from mergekit_evo.model_files import num_layers

# The demo's budget: 75 generations of 8 (the budget is checked after each generation). On world v4 CMA-ES was
# still climbing at 296 evaluations; 600 cleared the margins over the parents and plain merges on every seed's
# validation items where 296 did not (docs/tiny-world.md, "Choosing the demo's budget"), and stays under 5 minutes.
DEMO_EVALUATIONS = 600
# The multi-objective demo keeps 37 generations of 8: NSGA-II scores two skills per candidate (2 min 20 s on world
# v4 at 296; docs/performance.md).
PARETO_DEMO_EVALUATIONS = 296


def _task(world: Path, skill: str, **extra) -> dict:
    return {
        "name": skill,
        "items": str(task_file(world, skill, "search")),
        "test_items": str(task_file(world, skill, "test")),
        **extra,
    }


def cross_skill_config(
    world: Path,
    max_evaluations: int = DEMO_EVALUATIONS,
    optimizer: str = "cma",
    population: int = 8,
    objectives: str = "weighted",
) -> dict:
    """Sakana's experiment in miniature: evolve a merge for arithmetic asked in B, which neither parent can do.

    Task arithmetic over the math-A and language-B specialists with one weight per model and layer, in [0, 2]
    (the search starts at 1.0 each: plain task arithmetic). A fifth of the search items is held back to choose
    the final merge among the top 5, and the held-out split measures it against the parents and plain merges.
    With `objectives="separate"` math_b and facts_b are two objectives and the run reports their Pareto front.
    """
    models = world / "models"
    tasks = [_task(world, "math_b", validation=0.2)]
    if objectives == "separate":
        tasks.append(_task(world, "facts_b", validation=0.2))
    return {
        "models": [str(models / "math_a"), str(models / "lang_b")],
        "base_model": str(models / "base"),
        "merge_method": "task_arithmetic",
        "dtype": "float32",
        "genome": {
            "parameters": {"weight": {"min": 0.0, "max": 2.0}},
            "layer_groups": num_layers(str(models / "base")),
        },
        "tasks": tasks,
        "objectives": objectives,
        "estimator": {"name": "full"},
        "optimizer": {"name": optimizer, "population": population},
        "budget": {"max_evaluations": max_evaluations},
        "seed": 0,
    }


def two_skill_config(
    world: Path,
    max_evaluations: int = 32,
    optimizer: str = "random",
    population: int = 8,
    objectives: str = "weighted",
) -> dict:
    """Task arithmetic over the two specialists for both their skills (math_a and facts_b), weights per model and
    layer half, starting from the naive average of the two task vectors (examples/tiny-task-arithmetic.yaml).

    Small and quick, so the tests use it; a plain merge already does well here, which is why the demo searches
    for the cross skill instead. With `objectives="separate"` each skill is its own objective.
    """
    models = world / "models"
    return {
        "models": [str(models / "math_a"), str(models / "lang_b")],
        "base_model": str(models / "base"),
        "merge_method": "task_arithmetic",
        "dtype": "float32",
        "genome": {"parameters": {"weight": {"min": 0.0, "max": 1.0}}, "layer_groups": 2},
        "tasks": [_task(world, skill) for skill in ("math_a", "facts_b")],
        "objectives": objectives,
        "estimator": {"name": "full"},
        "optimizer": {"name": optimizer, "population": population},
        "budget": {"max_evaluations": max_evaluations},
        "seed": 0,
    }
