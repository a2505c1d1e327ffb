"""The ask/tell interface every optimizer implements, and the core's `random` search.

Optimizers work in the unit cube [0,1]^d and maximise every objective. A failed candidate is told as NaN; each
optimizer decides how to treat it (the built-ins rank it below every scored one). No optimizer is stored with a run:
a resumed run builds a new one with the same arguments and replays the recorded generations through it (see
`Optimizer`), so nothing in a run folder is ever unpickled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from mergekit_evo.plugin.errors import NoOptions, parse_plugin_options
from mergekit_evo.plugin.hookspecs import hookimpl


class Optimizer(ABC):
    """Subclass, declare `Options` (a pydantic model), implement `ask` and `tell`; register the class with
    `register_optimizers`.

    The resume contract: an optimizer is deterministic given its constructor's arguments and the sequence of
    `tell`s. Keep every random draw on `self` (a `numpy.random.Generator` seeded from `seed`), never numpy's or
    Python's global state, the clock or the process. A resumed run builds a new optimizer, asks and tells it every
    recorded generation in order (the fitness as recorded), checks each replayed `ask` against the recorded genomes
    (refusing the resume in one line if one differs) and goes on from there. `optimizer_checks.asks_after_resume`
    tests exactly this; an optimizer with `asynchronous = True` is replayed with each `tell` right after its `ask`,
    which is the same to it since its asks do not depend on tells.

    The run builds it once, with keywords only: `dim` genes in [0, 1]; `n_objectives` (more than 1 only for
    optimizers with `multi_objective = True`; others get the weighted sum); the run's `seed`; `population`
    candidates per `ask`; the user's `options` mapping (validated against `Options` here); `x0`, the genome's
    start point; `steps`, each gene's grid spacing in the unit cube (0 where continuous); and `depths`, each gene's
    place along the model's layers (0 first, 1 last; NaN for a gene that spans them all).
    """

    multi_objective = False
    # True when `ask` never depends on the `tell`s before it (random search): the run may then ask the next
    # generation while the last one's slowest members are still being scored, so no worker waits. Tells still
    # come once per generation, in order.
    asynchronous = False
    # True for optimizers that model a continuous distribution (CMA-ES): a categorical gene (the merge method, when
    # several are listed) is then given as one gene per option, the largest choosing; otherwise as one gene whose
    # value picks an option (equal shares of [0, 1]), which a GA's crossover and mutation search directly.
    relaxes_choices = False
    # True for optimizers that learn from each item, not only the fitness (M2N2's resource competition): `tell` then
    # also gets `item_scores`, shape (population, items), every task's scored items side by side in config order,
    # as the task backend scores an item (1/0 for accuracy), NaN rows for failed candidates. Optimizers that leave it
    # False get `tell(xs, fitness)` as ever.
    wants_item_scores = False

    Options: ClassVar[type[BaseModel]] = NoOptions  # a subclass declares its own: `class Options(BaseModel): ...`

    def __init__(
        self,
        *,
        dim: int,
        n_objectives: int,
        seed: int,
        population: int,
        options: dict,
        x0: np.ndarray,
        steps: np.ndarray | None = None,
        depths: np.ndarray | None = None,
    ):
        self.dim = dim
        self.n_objectives = n_objectives
        self.seed = seed
        self.population = population
        # typed Any: each subclass reads the fields of its own `Options`
        self.options: Any = parse_plugin_options(self.Options, options, "optimizer.options")
        self.x0 = np.asarray(x0, dtype=float)
        # Grid spacing of each coordinate in the unit cube, 0 where continuous. The genome snaps values to the grid
        # itself; an optimizer may use this to keep its steps from shrinking below one grid cell.
        self.steps = np.zeros(dim) if steps is None else np.asarray(steps, dtype=float)
        # Where each gene acts along the layers, for crossovers that split a genome at a layer.
        self.depths = np.full(dim, np.nan) if depths is None else np.asarray(depths, dtype=float)

    @classmethod
    def check_options(cls, options: dict, n_objectives: int) -> None:
        """Refuse bad options when the run is configured, before any model is loaded; raise `UserError`."""
        parse_plugin_options(cls.Options, options, "optimizer.options")

    @abstractmethod
    def ask(self) -> np.ndarray:
        """The next generation, shape (population, dim), every value in [0, 1]."""

    @abstractmethod
    def tell(self, xs: np.ndarray, fitness: np.ndarray) -> None:
        """Fitness of `xs`, shape (population, n_objectives), higher is better, NaN for failed candidates.

        An optimizer with `wants_item_scores = True` declares `tell(self, xs, fitness, item_scores=None)` instead
        and is always given them.
        """


def tell(optimizer: Optimizer, xs: np.ndarray, fitness: np.ndarray, item_scores: Callable[[], np.ndarray]) -> None:
    """Tell an optimizer a generation; the item score matrix is built, and given, only to one that asks for it."""
    if getattr(optimizer, "wants_item_scores", False):
        optimizer.tell(xs, fitness, item_scores=item_scores())  # type: ignore[call-arg]
    else:
        optimizer.tell(xs, fitness)


class RandomSearch(Optimizer):
    """Uniform random search, with the initial point as the very first candidate: the baseline to beat."""

    multi_objective = True
    asynchronous = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rng = np.random.default_rng(self.seed)
        self.generation = 0  # generations asked (a checkpoint taken between generations also counts those told)

    def ask(self) -> np.ndarray:
        xs = self.rng.random((self.population, self.dim))
        if self.generation == 0:
            xs[0] = self.x0
        self.generation += 1
        return xs

    def tell(self, xs: np.ndarray, fitness: np.ndarray) -> None:
        pass


@hookimpl
def register_optimizers(register):
    register("random", RandomSearch)
