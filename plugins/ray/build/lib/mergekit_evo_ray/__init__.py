"""mergekit-evo-ray: the `ray` executor (candidates merged and scored by warm Ray actors, locally or on a cluster)."""

from __future__ import annotations

from mergekit_evo import hookimpl
from mergekit_evo_ray.executor import RayExecutor

__all__ = ["RayExecutor"]


@hookimpl
def register_executors(register):
    register("ray", RayExecutor)
