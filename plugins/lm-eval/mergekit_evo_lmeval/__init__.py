"""mergekit-evo plugin: lm-eval-harness tasks as fitness (`backend: lm-eval`) and the `full-lm-eval` estimator."""

from mergekit_evo import Estimator, hookimpl
from mergekit_evo_lmeval.backend import LmEvalTask

__all__ = ["LmEvalTask", "FullLmEvalEstimator"]


class FullLmEvalEstimator(Estimator):
    """Every document of each task, run through lm-eval whole (as `lm_eval --tasks` would): the costly reference."""


@hookimpl
def register_task_backends(register):
    register("lm-eval", LmEvalTask)


@hookimpl
def register_estimators(register):
    register("full-lm-eval", FullLmEvalEstimator)
