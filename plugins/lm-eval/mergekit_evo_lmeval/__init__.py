"""mergekit-evo plugin: lm-eval-harness tasks as fitness (`backend: lm-eval`) and the `full-lm-eval` estimator."""

from mergekit_evo import Estimator, hookimpl
from mergekit_evo_lmeval.backend import LmEvalTask

__all__ = ["LmEvalTask", "FullLmEvalEstimator"]


class FullLmEvalEstimator(Estimator):
    """The core's `full` estimator under the name configs for this backend use: every item of each task (the base
    class's choice and mean), which the lm-eval backend scores by running the task whole, as `lm_eval --tasks` would.
    Nothing is overridden; the name stays so that such configs keep running."""


@hookimpl
def register_task_backends(register):
    register("lm-eval", LmEvalTask)


@hookimpl
def register_estimators(register):
    register("full-lm-eval", FullLmEvalEstimator)
