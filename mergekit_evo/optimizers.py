"""The ask/tell interface every optimizer implements, and the core's `random` search.

Optimizers work in the unit cube [0,1]^d and maximise every objective. A failed candidate is told as NaN; each
optimizer decides how to treat it (the built-ins rank it below every scored one). An optimizer's whole state is
pickled with the run after each generation, and a resumed run must propose exactly what the original would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from pydantic import BaseModel, ConfigDict

from mergekit_evo.config import parse_plugin_options
from mergekit_evo.hookspecs import hookimpl


class Optimizer(ABC):
    """Subclass, declare `Options` (a pydantic model), implement `ask` and `tell`.

    `n_objectives > 1` is offered only to optimizers with `multi_objective = True`; others get a weighted sum.
    """

    multi_objective = False

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, dim: int, n_objectives: int, seed: int, population: int, options: dict, x0: np.ndarray):
        self.dim = dim
        self.n_objectives = n_objectives
        self.seed = seed
        self.population = population
        self.options = parse_plugin_options(self.Options, options, "optimizer.options")
        self.x0 = np.asarray(x0, dtype=float)

    @abstractmethod
    def ask(self) -> np.ndarray:
        """The next generation, shape (population, dim), every value in [0, 1]."""

    @abstractmethod
    def tell(self, xs: np.ndarray, fitness: np.ndarray) -> None:
        """Fitness of `xs`, shape (population, n_objectives), higher is better, NaN for failed candidates."""


class RandomSearch(Optimizer):
    """Uniform random search, with the initial point as the very first candidate: the baseline to beat."""

    multi_objective = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rng = np.random.default_rng(self.seed)
        self.generation = 0

    def ask(self) -> np.ndarray:
        xs = self.rng.random((self.population, self.dim))
        if self.generation == 0:
            xs[0] = self.x0
        return xs

    def tell(self, xs: np.ndarray, fitness: np.ndarray) -> None:
        self.generation += 1


@hookimpl
def register_optimizers(register):
    register("random", RandomSearch)
