"""mergekit-evo plugin: lm-eval-harness tasks as fitness (`backend: lm-eval`), and `full-lm-eval`, the name configs
written for it give the core's `full` estimator (every document of each task, as `lm_eval --tasks` runs it)."""

from mergekit_evo import Estimator, hookimpl
from mergekit_evo_lmeval.backend import LmEvalTask

__all__ = ["LmEvalTask"]


@hookimpl
def register_task_backends(register):
    register("lm-eval", LmEvalTask)


@hookimpl
def register_estimators(register):
    register("full-lm-eval", Estimator)  # the base class estimates from every item: the same as `full`
