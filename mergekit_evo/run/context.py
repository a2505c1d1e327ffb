"""What the parts of a run share: its config and folder, the plugins it was wired with, the genome, the tasks and
the items drawn for them, and the running best. Built once, checked at the boundary, then trusted by the scoring,
the scheduler and the ending (evolution.py says how they fit together)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mergekit_evo.config import EvolveConfig
from mergekit_evo.config.schema import AuditConfig
from mergekit_evo.estimate.estimators import Estimator
from mergekit_evo.merge.base import Merger
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.plugin.manager import PluginManager, Registry, check_plugin_names, get_plugin_manager, registry
from mergekit_evo.rank.ranking import RunningBest
from mergekit_evo.run.executors import build_tasks
from mergekit_evo.run.preflight import check_inputs, check_item_lengths
from mergekit_evo.scoring.tasks import TaskBackend
from mergekit_evo.space.baselines import configured_baselines
from mergekit_evo.space.dataflow import DataFlowSpace
from mergekit_evo.space.factory import genome_space
from mergekit_evo.space.genome import GenomeSpace
from mergekit_evo.store.runs import RunStore


@dataclass
class RunContext:
    config: EvolveConfig
    store: RunStore
    log: Callable[[str], None]
    pm: PluginManager
    reg: Registry
    genome: GenomeSpace | DataFlowSpace
    baselines: dict[str, dict]  # name -> the plain merge's recipe
    backends: dict[str, type[TaskBackend]]  # task name -> its backend class
    tasks: dict[str, TaskBackend]
    weights: dict[str, float]
    estimator: Estimator
    merger: Merger
    optimizer_cls: Any
    executor_cls: Any
    audit: AuditConfig | None  # None when the estimate is exact (decided once the items are drawn)
    running: RunningBest  # the leader as the search goes: the audit asks it, the scheduler offers it each record
    selection: dict[str, list[int]] = field(default_factory=dict)  # task -> the estimator's item indices

    @classmethod
    def build(
        cls, config: EvolveConfig, store: RunStore, reg: Registry | None = None, log: Callable[[str], None] = print
    ) -> RunContext:
        """Every plugin the config names, looked up once and checked against it, before anything is scored."""
        pm = get_plugin_manager()
        reg = reg or registry(pm)
        check_plugin_names(config, reg)
        scoring = check_inputs(config)
        optimizer_cls = reg.get("optimizers", config.optimizer.name, "optimizer.name", config.providers)
        genome = genome_space(config, relax_choices=bool(getattr(optimizer_cls, "relaxes_choices", False)))
        if genome.dim == 0:
            raise UserError("genome.parameters: nothing to evolve; give at least one parameter as {min: .., max: ..}")
        backends = {t.name: reg.get("task_backends", t.backend, "tasks", config.providers) for t in config.tasks}
        tasks = build_tasks(config, backends)
        check_item_lengths(tasks, scoring)
        for i, task in enumerate(tasks.values()):
            if config.tasks[i].validation_items and type(task).score_validation is TaskBackend.score_validation:
                raise UserError(
                    f"tasks[{i}].validation_items: the {config.tasks[i].backend} backend does not read "
                    "validation items; hold back a share of the search items instead (validation: 0.2)"
                )
        weights = {t.name: t.weight for t in config.tasks}
        if sum(weights.values()) <= 0:
            raise UserError("tasks: at least one task needs a weight above 0")
        estimator_cls = reg.get("estimators", config.estimator.name, "estimator.name", config.providers)
        estimator = estimator_cls(options=config.estimator.options, seed=config.seed)
        for name, task in tasks.items():
            estimator.check(name, len(task.item_ids))
        merger = reg.get("mergers", config.merger.name, "merger.name", config.providers)(config=config)
        n_objectives = len(config.objective_names())
        if n_objectives > 1 and not optimizer_cls.multi_objective:
            raise UserError(
                f"objectives: {config.optimizer.name} optimizes one objective; use `objectives: weighted` "
                "or a multi-objective optimizer"
            )
        optimizer_cls.check_options(config.optimizer.options, n_objectives)
        executor_cls = reg.get("executors", config.executor.name, "executor.name", config.providers)
        executor_cls.check_options(config.executor.options)
        return cls(
            config=config,
            store=store,
            log=log,
            pm=pm,
            reg=reg,
            genome=genome,
            baselines=configured_baselines(config, genome),
            backends=backends,
            tasks=tasks,
            weights=weights,
            estimator=estimator,
            merger=merger,
            optimizer_cls=optimizer_cls,
            executor_cls=executor_cls,
            audit=config.estimator.audit,
            running=RunningBest(config.best_by, guarded=False),
        )

    def weighted_mean(self, scores: dict[str, float]) -> float | None:
        """The tasks' weighted mean over the tasks in `scores` (None when they weigh nothing): a fitness."""
        weights = {n: w for n, w in self.weights.items() if n in scores}
        total = sum(weights.values())
        return sum(w * scores[n] for n, w in weights.items()) / total if total > 0 else None

    def cheap(self) -> bool:
        """Whether some task is estimated from fewer than all its search items (subsample, IRT anchors)."""
        return any(len(self.selection[name]) < len(task.item_ids) for name, task in self.tasks.items())
