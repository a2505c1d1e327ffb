"""mergekit-evo plugin: M2N2 (Abrantes et al. 2025, "Competition and Attraction Improve Model Fusion") as `m2n2`."""

from mergekit_evo import hookimpl
from mergekit_evo_m2n2.optimizer import M2N2

__all__ = ["M2N2"]


@hookimpl
def register_optimizers(register):
    register("m2n2", M2N2)
