"""The run's side of the optimizer: a new one built from the config, its asks checked, and the replay that puts a
new optimizer where a resumed run stood (a run never stores its optimizer: `Optimizer`'s docstring, the contract)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from mergekit_evo.plugin.errors import RunFailure, UserError
from mergekit_evo.run.context import RunContext
from mergekit_evo.run.fitness import Fitness
from mergekit_evo.run.optimizers import tell
from mergekit_evo.store.runs import CandidateRecord


def new_optimizer(ctx: RunContext) -> Any:
    """The config's optimizer, seeded as the run's, before anything is told."""
    return ctx.optimizer_cls(
        dim=ctx.genome.dim,
        n_objectives=len(ctx.config.objective_names()),
        seed=ctx.config.seed,
        population=ctx.config.optimizer.population,
        options=ctx.config.optimizer.options,
        x0=ctx.genome.initial_point(),
        steps=ctx.genome.unit_steps(),
        depths=ctx.genome.depths(),
    )


def asked(ctx: RunContext, optimizer: Any) -> np.ndarray:
    """The optimizer's next generation, checked: a plugin's wrong shape, non-finite value or value outside the
    unit cube is one line naming it (a rounding error of at most 1e-9 is clipped)."""
    name = f"optimizer {ctx.config.optimizer.name!r}"
    try:
        xs = np.asarray(optimizer.ask(), dtype=float)
    except (TypeError, ValueError) as e:
        raise RunFailure(f"{name}: ask() did not return numbers ({e}); report it to the plugin's authors") from None
    if xs.ndim != 2 or xs.shape[1] != ctx.genome.dim or len(xs) == 0:
        raise RunFailure(
            f"{name}: ask() returned an array of shape {xs.shape}; the interface wants (population, "
            f"{ctx.genome.dim}), one row per candidate; report it to the plugin's authors"
        )
    if not np.isfinite(xs).all():
        raise RunFailure(f"{name}: ask() returned a non-finite gene; report it to the plugin's authors")
    if xs.min() < -1e-9 or xs.max() > 1 + 1e-9:
        raise RunFailure(
            f"{name}: ask() returned genes outside [0, 1] (from {xs.min():.6g} to {xs.max():.6g}); every gene "
            "lives in the unit cube; report it to the plugin's authors"
        )
    return np.clip(xs, 0.0, 1.0)


def replayed_optimizer(ctx: RunContext, fitness: Fitness, records: list[CandidateRecord], generations: int) -> Any:
    """A new optimizer, seeded as the run's, told the recorded generations before `generations` again.

    An optimizer is deterministic given its seed, its options and what it is told, so asking and telling it the
    recorded generations in order puts it exactly where the run stood. Each replayed ask is compared with the
    genomes on record, so an optimizer that does not reproduce its run is refused rather than followed.
    """
    optimizer = new_optimizer(ctx)
    by_position = {(r.generation, r.member): r for r in records}
    for generation in range(generations):
        xs = asked(ctx, optimizer)
        members: list[CandidateRecord | None] = []
        for member, x in enumerate(xs):
            record = by_position.get((generation, member))
            if record is None:  # its line cannot be read (reported above): told as a failure, and said so
                ctx.log(
                    f"generation {generation} member {member} has no readable record: the optimizer is told it "
                    "failed, so from here it may propose other candidates than the run first did (restore the "
                    "line to resume exactly)"
                )
                members.append(None)
                continue
            if record.genome != [float(v) for v in x]:
                raise UserError(
                    f"{ctx.store.path}: optimizer {ctx.config.optimizer.name} proposes other candidates than "
                    f"recorded (generation {generation}, member {member}) when its records are replayed; resume "
                    "with the plugin version that wrote the run, or start a new run"
                )
            members.append(record)
        told = np.full((len(xs), len(ctx.config.objective_names())), np.nan)
        for record in members:  # as the loop fills a generation: failed members stay NaN
            if record is not None and record.ok:
                told[record.member] = record.objectives
        tell(optimizer, xs, told, functools.partial(fitness.item_scores, members))
    return optimizer
