"""The demo: evolve a merge of the tiny world's two specialists for the combined skill."""

from __future__ import annotations

from pathlib import Path

from mergekit_evo.tiny_world import task_file


def demo_config(
    world: Path, max_evaluations: int = 32, optimizer: str = "random", population: int = 8,
    objectives: str = "weighted",
) -> dict:
    """Task arithmetic over the math-A and language-B specialists, weights evolved per model and layer half.

    The search starts from the middle of the range, 0.5 for each model: the naive average of the two task vectors.
    With `objectives="separate"` each skill is its own objective and the run reports the Pareto front.
    """
    models = world / "models"
    return {
        "models": [str(models / "math_a"), str(models / "lang_b")],
        "base_model": str(models / "base"),
        "merge_method": "task_arithmetic",
        "dtype": "float32",
        "genome": {"parameters": {"weight": {"min": 0.0, "max": 1.0}}, "layer_groups": 2},
        "tasks": [
            {"name": skill, "items": str(task_file(world, skill, "search")), "test_items": str(task_file(world, skill, "test"))}
            for skill in ("math_a", "facts_b")
        ],
        "objectives": objectives,
        "estimator": {"name": "full"},
        "optimizer": {"name": optimizer, "population": population},
        "budget": {"max_evaluations": max_evaluations},
        "seed": 0,
    }
