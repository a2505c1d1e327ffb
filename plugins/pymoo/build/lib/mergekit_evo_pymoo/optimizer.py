"""pymoo algorithms behind mergekit-evo's ask/tell interface.

pymoo 0.6 keeps all its randomness in the algorithm object (`random_state`), so an algorithm built from the same
options and told the same fitness proposes the same candidates: a resumed run rebuilds it by replaying its records
(milliseconds per generation, no model is touched).
The user's `options:` go to the pymoo constructor unchanged, checked first against the names that constructor really
takes, because pymoo itself silently ignores unknown keyword arguments.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
from pymoo.algorithms.moo.moead import ParallelMOEAD
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.algorithms.soo.nonconvex.de import DE, Variant
from pymoo.algorithms.soo.nonconvex.ga import GA
from pymoo.algorithms.soo.nonconvex.pso import PSO
from pymoo.core.evaluator import Evaluator
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination
from pymoo.decomposition.asf import ASF
from pymoo.decomposition.pbi import PBI
from pymoo.decomposition.tchebicheff import Tchebicheff
from pymoo.decomposition.weighted_sum import WeightedSum
from pymoo.operators.crossover.pcx import PCX
from pymoo.operators.crossover.pntx import SinglePointCrossover, TwoPointCrossover
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.crossover.ux import UniformCrossover
from pymoo.operators.mutation.gauss import GaussianMutation
from pymoo.operators.mutation.pm import PM
from pymoo.problems.static import StaticProblem
from pymoo.util.ref_dirs import get_reference_directions
from scipy.stats import qmc

from mergekit_evo import Optimizer, UserError, close_matches

FIELD = "optimizer.options"
# Constructor arguments this plugin sets itself (population, start, run control) or that make no sense from YAML.
MANAGED = {
    "pop_size",
    "sampling",
    "termination",
    "output",
    "display",
    "callback",
    "archive",
    "verbose",
    "seed",
    "evaluator",
    "save_history",
    "return_least_infeasible",
    "mating",
    "survival",
    "selection",
    "repair",
    "advance_after_initial_infill",
}
MANAGED_HINT = "use optimizer.population for the population, budget for termination and the run's seed"
# Operators a config can name, as `crossover: sbx` or `crossover: {name: sbx, eta: 20}`.
OPERATORS: dict[str, dict[str, type]] = {
    "crossover": {
        "sbx": SBX,
        "ux": UniformCrossover,
        "pcx": PCX,
        "1px": SinglePointCrossover,
        "2px": TwoPointCrossover,
    },
    "mutation": {"pm": PM, "gauss": GaussianMutation},
    "decomposition": {"tchebicheff": Tchebicheff, "pbi": PBI, "asf": ASF, "weighted-sum": WeightedSum},
}


def accepted_arguments(cls: type, follow_kwargs: bool = True) -> list[str]:
    """The keyword arguments a pymoo class really takes, following `**kwargs` up its base classes."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not follow_kwargs or not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(names))


def _check_arguments(name: str, valid: list[str], given: dict, field: str) -> None:
    for key in given:
        if key not in valid:
            raise UserError(f"{field}.{key}: {name} takes no such option; {close_matches(key, valid)}")


def _operator(kind: str, spec: str | dict, field: str):
    """An operator object from its config spec, every argument checked against its constructor."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name", None)
    choices = OPERATORS[kind]
    if name not in choices:
        raise UserError(f"{field}.name: no {kind} named {name!r}; {close_matches(str(name), list(choices))}")
    _check_arguments(choices[name].__name__, accepted_arguments(choices[name]), spec, field)
    return choices[name](**spec)


def default_partitions(n_objectives: int, population: int) -> int:
    """The most Das-Dennis partitions whose number of reference directions, C(p+m-1, m-1), fits the population."""
    p = 1
    while math.comb(p + 1 + n_objectives - 1, n_objectives - 1) <= population:
        p += 1
    return p


class PymooOptimizer(Optimizer):
    """Base of the pymoo optimizers; subclasses name the pymoo class."""

    algorithm: type
    uses_ref_dirs = False
    sets_pop_size = True
    operators = tuple(OPERATORS)  # which options are operator specs, built into pymoo objects

    @classmethod
    def valid_options(cls) -> list[str]:
        """What `optimizer.options` may hold: the pymoo constructor's own arguments, less those set here."""
        return [n for n in accepted_arguments(cls.algorithm) if n not in MANAGED] + (
            ["ref_dirs"] if cls.uses_ref_dirs else []
        )

    @classmethod
    def check_options(cls, options: dict, n_objectives: int) -> None:
        if cls.uses_ref_dirs and n_objectives < 2:
            raise UserError(
                f"optimizer.name: {cls.algorithm.__name__} needs several objectives; set `objectives: separate` "
                "with two or more tasks, or use nsga2 or a single-objective optimizer"
            )
        for key in options:
            if key in MANAGED:
                raise UserError(f"{FIELD}.{key}: set by mergekit-evo; {MANAGED_HINT}")
        _check_arguments(cls.algorithm.__name__, list(dict.fromkeys(cls.valid_options())), options, FIELD)
        for kind in cls.operators:
            if kind in options:
                _operator(kind, options[kind], f"{FIELD}.{kind}")
        if "ref_dirs" in options and not isinstance(options["ref_dirs"], dict):
            raise UserError(f"{FIELD}.ref_dirs: give a mapping such as {{method: das-dennis, n_partitions: 12}}")

    def __init__(self, *, options: dict, **run: Any):
        # pymoo's options are checked against its constructors' signatures, not a pydantic model
        self.check_options(options, run["n_objectives"])
        super().__init__(options={}, **run)
        self.pymoo_options = dict(options)
        self._pending = None
        self._build()

    def _build(self) -> None:
        kwargs: dict[str, Any] = {}
        for key, value in self.pymoo_options.items():
            if key in self.operators:
                value = _operator(key, value, f"{FIELD}.{key}")
            kwargs[key] = value
        size = self.population
        if self.uses_ref_dirs:
            spec = dict(kwargs.pop("ref_dirs", None) or {})
            method = spec.pop("method", "das-dennis")
            if method == "das-dennis":
                spec.setdefault("n_partitions", default_partitions(self.n_objectives, self.population))
            try:
                ref_dirs = get_reference_directions(method, self.n_objectives, **spec)
            except Exception as e:
                raise UserError(f"{FIELD}.ref_dirs: pymoo refused it: {e}") from None
            kwargs["ref_dirs"] = ref_dirs
            size = len(ref_dirs) if not self.sets_pop_size else max(self.population, len(ref_dirs))
        if self.sets_pop_size:
            kwargs["pop_size"] = size
        if "n_neighbors" in accepted_arguments(self.algorithm):
            kwargs.setdefault("n_neighbors", min(20, size))
        try:
            self.algo = self.algorithm(sampling=self._initial_population(size), seed=self.seed, **kwargs)
        except Exception as e:
            raise UserError(f"{FIELD}: pymoo's {self.algorithm.__name__} refused the options: {e}") from None
        self.problem = Problem(n_var=self.dim, n_obj=self.n_objectives, xl=0.0, xu=1.0)
        self.algo.setup(self.problem, termination=NoTermination(), verbose=False)

    def _initial_population(self, size: int) -> np.ndarray:
        """The configured start point plus a Latin hypercube around it, so generation 0 covers the space evenly."""
        sample = qmc.LatinHypercube(d=self.dim, seed=np.random.default_rng(self.seed)).random(size)
        sample[0] = self.x0
        return sample

    def ask(self) -> np.ndarray:
        pending = self.algo.ask()
        self._pending = pending
        return np.asarray(pending.get("X"), dtype=float)

    def tell(self, xs: np.ndarray, fitness: np.ndarray) -> None:
        self._tell_pymoo(np.asarray(fitness, dtype=float))

    def _tell_pymoo(self, fitness: np.ndarray) -> None:
        loss = -fitness  # pymoo minimises
        for j in range(loss.shape[1]):  # failed candidates rank below every scored one, objective by objective
            column = loss[:, j]
            finite = np.isfinite(column)
            column[~finite] = column[finite].max() + 1.0 if finite.any() else 1.0
        Evaluator().eval(StaticProblem(self.problem, F=loss), self._pending)
        self.algo.tell(infills=self._pending)
        self._pending = None


class GAOptimizer(PymooOptimizer):
    """pymoo GA: a real-coded genetic algorithm (SBX crossover, polynomial mutation); one objective."""

    algorithm = GA


class DEOptimizer(PymooOptimizer):
    """pymoo DE: differential evolution (variant, CR, F as options); one objective."""

    algorithm = DE
    operators = ()  # DE builds its own from `variant`, e.g. DE/rand/1/bin

    @classmethod
    def valid_options(cls) -> list[str]:
        # DE hands its **kwargs to its `Variant`, not to its base class
        own = accepted_arguments(DE, follow_kwargs=False) + accepted_arguments(Variant, follow_kwargs=False)
        return [n for n in own if n not in MANAGED | {"selection", "n_diffs", "crossover", "control"}]


class PSOOptimizer(PymooOptimizer):
    """pymoo PSO: particle swarm with adaptive inertia; one objective."""

    algorithm = PSO


class NSGA2Optimizer(PymooOptimizer):
    """pymoo NSGA-II: non-dominated sorting with crowding; one or several objectives (Pareto front)."""

    algorithm = NSGA2
    multi_objective = True


class NSGA3Optimizer(PymooOptimizer):
    """pymoo NSGA-III: reference-direction niching, for three or more objectives; several objectives."""

    algorithm = NSGA3
    multi_objective = True
    uses_ref_dirs = True


class MOEADOptimizer(PymooOptimizer):
    """pymoo MOEA/D: decomposition into one subproblem per reference direction; several objectives."""

    algorithm = ParallelMOEAD  # the variant that proposes a whole generation at once, as ask/tell needs
    multi_objective = True
    uses_ref_dirs = True
    sets_pop_size = False  # one individual per reference direction


OPTIMIZERS: dict[str, type[PymooOptimizer]] = {
    "ga": GAOptimizer,
    "de": DEOptimizer,
    "pso": PSOOptimizer,
    "nsga2": NSGA2Optimizer,
    "nsga3": NSGA3Optimizer,
    "moead": MOEADOptimizer,
}
