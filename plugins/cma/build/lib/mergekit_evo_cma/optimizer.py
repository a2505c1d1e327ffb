"""CMA-ES over the unit cube, as in Sakana AI's evolutionary merging, resumed by replaying the run's records.

The `cma` package draws its samples from numpy's global random state (through `np.random.randn`). A resumed run
rebuilds the optimizer and replays the recorded generations, so it must draw exactly what the original did whatever
else the process has drawn: this optimizer hands `cma` a module-level `randn` that looks the global state up at call
time, keeps a private copy of that state seeded from the run's seed, and swaps it in around every call into `cma`;
nothing else in the process can disturb its sequence, and it disturbs nobody else's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import cma
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mergekit_evo import Optimizer, UserError, close_matches, parse_plugin_options

# Options this plugin sets itself; a user value would break bounds, resumability or quiet output.
MANAGED = {"bounds", "popsize", "seed", "randn", "verbose", "verb_disp", "verb_log", "CMA_diagonal", "minstd"}
SEP_CMA_ABOVE = 100  # genes; beyond this a full covariance learns too slowly for the budgets merging can afford


def _global_randn(*shape: int) -> np.ndarray:
    """`np.random.randn` looked up when called, so it draws from whatever global state is swapped in."""
    return np.random.randn(*shape)


class CMAES(Optimizer):
    """CMA-ES (cma package): bounded, sep-CMA for large genomes, IPOP restarts; one objective."""

    relaxes_choices = True  # a Gaussian over the cube: a method gene comes as one gene per method, the largest wins

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")

        sigma0: float = Field(1 / 6, gt=0, le=1, description="initial step size, as a fraction of each gene's range")
        diagonal: bool | None = Field(
            None, description=f"sep-CMA (diagonal covariance); default: on above {SEP_CMA_ABOVE} genes"
        )
        restarts: Literal["ipop", "off"] = Field(
            "ipop", description="when CMA-ES converges: restart from a random point with twice the population, or go on"
        )
        max_restarts: int = Field(9, ge=0)
        cma_options: dict[str, Any] = Field(default_factory=dict, description="further options of cma.CMAOptions")

    @classmethod
    def check_options(cls, options: dict, n_objectives: int) -> None:
        parsed = parse_plugin_options(cls.Options, options, "optimizer.options")
        known = list(cma.CMAOptions())
        for key in parsed.cma_options:
            if key in MANAGED:
                raise UserError(
                    f"optimizer.options.cma_options.{key}: set by mergekit-evo; use population, sigma0 or diagonal instead"
                )
            if key not in known:
                raise UserError(f"optimizer.options.cma_options.{key}: not a cma option; {close_matches(key, known)}")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.check_options(self.options.model_dump(), self.n_objectives)
        self._numpy_state = np.random.RandomState(self.seed).get_state()
        self.restarts = 0
        self.popsize = max(2, self.population)
        self._asked: list[np.ndarray] | None = None
        with self._private_numpy_random():
            self.es = self._new_es(self.x0)

    @contextmanager
    def _private_numpy_random(self) -> Iterator[None]:
        outside = np.random.get_state()
        np.random.set_state(self._numpy_state)
        try:
            yield
        finally:
            self._numpy_state = np.random.get_state()
            np.random.set_state(outside)

    def _new_es(self, x0: np.ndarray) -> cma.CMAEvolutionStrategy:
        diagonal = self.options.diagonal if self.options.diagonal is not None else self.dim > SEP_CMA_ABOVE
        opts = {
            **self.options.cma_options,
            "bounds": [0.0, 1.0],
            "popsize": self.popsize,
            "seed": float("nan"),  # never reseed the (private) global state
            "randn": _global_randn,
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,
            "CMA_diagonal": bool(diagonal),
            # On a grid, a step below a third of a cell would only ever propose the same values again.
            "minstd": list(self.steps / 3.0),
        }
        x0 = np.clip(np.asarray(x0, dtype=float), 1e-6, 1 - 1e-6)
        return cma.CMAEvolutionStrategy(list(x0), self.options.sigma0, opts)

    def _restart_if_converged(self) -> None:
        if self.options.restarts == "off" or self.restarts >= self.options.max_restarts or not self.es.stop():
            return
        self.restarts += 1
        self.popsize *= 2
        self.es = self._new_es(np.random.random(self.dim))  # IPOP: a fresh start anywhere, a wider search

    def ask(self) -> np.ndarray:
        with self._private_numpy_random():
            self._restart_if_converged()
            self._asked = self.es.ask()
        return np.array(self._asked)

    def tell(self, xs: np.ndarray, fitness: np.ndarray) -> None:
        # cma minimises; failed candidates rank below every scored one.
        loss = -np.asarray(fitness, dtype=float)[:, 0]
        finite = np.isfinite(loss)
        worst = loss[finite].max() + 1.0 if finite.any() else 1.0
        loss[~finite] = worst
        with self._private_numpy_random():
            self.es.tell(self._asked, list(loss))
        self._asked = None
