"""mergekit-evo-wandb: the `wandb` observer (a run's candidates, generations and chosen recipe in Weights & Biases)."""

from __future__ import annotations

from mergekit_evo import hookimpl
from mergekit_evo_wandb.observer import WandbObserver

__all__ = ["WandbObserver"]


@hookimpl
def register_observers(register):
    register("wandb", WandbObserver)
