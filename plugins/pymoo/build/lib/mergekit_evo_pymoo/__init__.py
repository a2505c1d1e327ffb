"""mergekit-evo plugin: pymoo's algorithms, each registered as an optimizer under its own short name."""

from mergekit_evo import hookimpl
from mergekit_evo_pymoo.optimizer import OPTIMIZERS

__all__ = ["OPTIMIZERS"]


@hookimpl
def register_optimizers(register):
    for name, cls in OPTIMIZERS.items():
        register(name, cls)
