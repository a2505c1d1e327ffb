"""mergekit-evo plugin: MERGE3's IRT fitness estimators (irt, p-irt, gp-irt, mp-irt, gmp-irt), fitted per run."""

from mergekit_evo import hookimpl
from mergekit_evo_irt.estimators import ESTIMATORS

__all__ = ["ESTIMATORS"]


@hookimpl
def register_estimators(register):
    for name, cls in ESTIMATORS.items():
        register(name, cls)
