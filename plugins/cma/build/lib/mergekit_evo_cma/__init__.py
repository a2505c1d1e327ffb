"""mergekit-evo plugin: CMA-ES (the `cma` package) as the optimizer named `cma`."""

from mergekit_evo import hookimpl
from mergekit_evo_cma.optimizer import CMAES

__all__ = ["CMAES"]


@hookimpl
def register_optimizers(register):
    register("cma", CMAES)
