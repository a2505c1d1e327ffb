"""mergekit-evo-mlflow: the `mlflow` observer (a run's candidates, generations and chosen recipe in MLflow)."""

from __future__ import annotations

from mergekit_evo import hookimpl
from mergekit_evo_mlflow.observer import MlflowObserver

__all__ = ["MlflowObserver"]


@hookimpl
def register_observers(register):
    register("mlflow", MlflowObserver)
