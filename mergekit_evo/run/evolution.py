"""One run: ask -> genome -> mergekit config -> merge -> score -> estimate -> tell -> record, in four parts that share
a `RunContext` (context.py: the config, the folder and the plugins, wired and checked once):

- `Fitness` (fitness.py): the items, a candidate's scores and estimate, the audit and the estimator's refit;
- `Scheduler` (scheduler.py): generations asked and not told, jobs in flight, records, tells and checkpoints;
- `Evidence` (evidence.py): the inputs and plain merges scored alike, the final choice and its held-out evidence;
- `Evolution` (here): starting or resuming a run folder, and where a resumed search stands.

Resuming is the same code path as starting: the optimizer is rebuilt by replaying the records (asking.py), the
current generation is asked again (the same candidates, since all randomness is in the optimizer) and only members
without a record are scored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mergekit_evo.config import EvolveConfig, check_config
from mergekit_evo.merge.base import Merger
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.plugin.manager import Registry
from mergekit_evo.rank.ranking import RunningBest, guarded
from mergekit_evo.run.asking import asked, new_optimizer, replayed_optimizer
from mergekit_evo.run.context import RunContext
from mergekit_evo.run.evidence import Evidence
from mergekit_evo.run.executors import Executor, Worker, WorkerSpec
from mergekit_evo.run.fitness import Fitness
from mergekit_evo.run.scheduler import Indices, Progress, Scheduler
from mergekit_evo.space.dataflow import DataFlowSpace, materialize_sources
from mergekit_evo.space.genome import GenomeSpace
from mergekit_evo.store.fingerprint import changes, run_fingerprint
from mergekit_evo.store.result import RunResult
from mergekit_evo.store.runs import CandidateRecord, RunStore
from mergekit_evo.views.observers import Notifier


class Evolution:
    """One run, bound to its run directory. Build with `Evolution.start` or `Evolution.resume`."""

    def __init__(
        self, config: EvolveConfig, store: RunStore, reg: Registry | None = None, log: Callable[[str], None] = print
    ):
        self.ctx = RunContext.build(config, store, reg, log)
        self.fitness = Fitness(self.ctx)
        self.evidence = Evidence(self.ctx, self.fitness)

    @property
    def config(self) -> EvolveConfig:
        return self.ctx.config

    @property
    def store(self) -> RunStore:
        return self.ctx.store

    @property
    def genome(self) -> GenomeSpace | DataFlowSpace:
        return self.ctx.genome

    @property
    def merger(self) -> Merger:
        return self.ctx.merger

    # ------------------------------------------------------------------------------ the run folder

    @classmethod
    def start(cls, config: EvolveConfig, run_dir: Path, log: Callable[[str], None] = print) -> Evolution:
        """A new run in `run_dir`, which must not hold one; everything is validated before the folder is touched."""
        run_dir = Path(run_dir)
        RunStore(run_dir, log).check_new()  # told before the seconds of validation and preflight below
        config = config.model_copy(update={"run_dir": run_dir.resolve()})
        evolution = cls(config, RunStore(run_dir, log), log=log)
        evolution.ctx.store = RunStore.create(run_dir, config, evolution.fingerprint(), log)
        return evolution

    @classmethod
    def resume(cls, run_dir: Path, log: Callable[[str], None] = print, accept_inputs: bool = False) -> Evolution:
        """The run in `run_dir`, locked for this process and checked against the inputs it started with.

        A run without fingerprint.json is refused, since nothing then says its records mean what the inputs mean
        now; `accept_inputs` records the current inputs as the run's instead (the user vouches for them).
        """
        store, config = RunStore.open(run_dir, log)
        check_config(config)
        store.lock()
        try:
            evolution = cls(config, store, log=log)
            evolution._check_log()  # first: a resume refused for any reason writes nothing
            evolution._check_fingerprint(accept_inputs)
        except BaseException:
            store.unlock()
            raise
        return evolution

    def fingerprint(self) -> dict:
        return run_fingerprint(self.config, {name: task.fingerprint() for name, task in self.ctx.tasks.items()})

    def _check_log(self) -> tuple[int, dict] | None:
        """The latest checkpoint, once the log and the checkpoints agree that the run has a past: a log that is gone
        while checkpoints say the search went on (or records without any checkpoint) is refused, never restarted
        over, since new candidates would then be numbered and counted as if nothing had been recorded."""
        store = self.store
        checkpoint = store.latest_checkpoint()
        lines = store.read_records().lines
        if checkpoint is None and lines:
            raise UserError(
                f"{store.path}: {lines} candidates are recorded but checkpoints/ holds no checkpoint, so where "
                "the search stood is unknown; restore checkpoints/, or start a new run in another folder"
            )
        if lines and store.read_text(RunStore.SELECTION) is None:
            raise UserError(
                f"{store.path}: {RunStore.SELECTION} is missing, and the recorded candidates were scored on the "
                "items it named; restore it, or start a new run in another folder"
            )
        if checkpoint is not None and checkpoint[0] > 0 and not lines:
            missing = "is missing" if not os.path.lexists(store.candidates_path) else "is empty"
            raise UserError(
                f"{store.path}: {RunStore.CANDIDATES} {missing}, but the run reached generation {checkpoint[0]}; "
                f"restore {RunStore.CANDIDATES} (the record of every candidate), or start a new run in another folder"
            )
        return checkpoint

    def _check_fingerprint(self, accept_inputs: bool = False) -> None:
        """Refuse to add records of another meaning: the models, genome, seed or items changed since the run started.
        Nothing is written unless the check passes (or the user accepts the current inputs for a run without one)."""
        current = self.fingerprint()
        saved = self.store.read_json(RunStore.FINGERPRINT)
        if saved is None:
            if not accept_inputs:
                raise UserError(
                    f"{self.store.path}: {RunStore.FINGERPRINT} is missing, so nothing says the models, genome, seed "
                    "and items are those the records were scored with; restore it, or add --accept-inputs to record "
                    "the current ones as the run's"
                )
            self.ctx.log("recording the current inputs as the run's (--accept-inputs), so later resumes are checked")
            self.store.write_json(RunStore.FINGERPRINT, current)
            return
        changed = changes(saved, current)
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise UserError(
                f"{self.store.path}: the run's inputs changed since it started: {'; '.join(changed[:3])}{more}; put "
                "back what it started with, or start a new run in another folder with `mergekit-evo run`"
            )

    def close(self) -> None:
        """Give up the run's lock (a run also gives it up when `run` returns or the process ends)."""
        self.store.unlock()

    # ------------------------------------------------------------------------------ the run

    def run(self, progress: bool = True) -> RunResult:
        """Search until the budget is spent, recording every candidate; the run's lock is given up on return."""
        try:
            return self._run(progress)
        finally:
            self.close()

    def _run(self, progress: bool) -> RunResult:
        ctx = self.ctx
        ctx.log(ctx.genome.describe())
        ctx.log(ctx.merger.describe())
        executor = ctx.executor_cls(options=ctx.config.executor.options)
        ctx.log(executor.describe())
        notifier = Notifier.build(ctx.config, ctx.reg, ctx.pm, ctx.store.path, ctx.log)
        materialize_sources(ctx.config, ctx.log)  # PS+DFS: the merged sources, before any worker reads them
        finished = False
        try:
            # started first: workers elsewhere load the sources while this process scores the inputs, and a worker that
            # cannot load them stops the run before any of that work
            initial = ctx.genome.to_yaml(ctx.genome.initial_point())
            executor.start(
                WorkerSpec(ctx.config, type(ctx.merger), ctx.backends, initial), Worker(ctx.merger, ctx.tasks), ctx.log
            )
            result = self._search(executor, notifier, progress)
            finished = True
            return result
        finally:
            executor.close()
            notifier.close(finished)

    def _search(self, executor: Executor, notifier: Notifier, progress: bool) -> RunResult:
        ctx = self.ctx
        ctx.store.write_json(RunStore.GENOME, {"genes": ctx.genome.layout()})
        self.fitness.select_items(progress)
        recorded = ctx.store.read_records()
        if not recorded.lines:  # a plugin's broken ask is refused before anything is scored
            asked(ctx, new_optimizer(ctx))
        inputs = self.evidence.score_inputs()
        records = recorded.rows
        if ctx.audit is not None and not ctx.cheap():
            ctx.log("estimator.audit: the estimate already uses every search item; nothing to audit")
            ctx.audit = None
        where = self._restore(records, evaluations=recorded.lines)
        self.fitness.write_calibration()  # once the estimator's fit is the one the search goes on with
        ctx.running = RunningBest(ctx.config.best_by, guarded=ctx.audit is not None and guarded(ctx.config))
        for seen in records:  # the same decisions, in the same order (the order they were recorded), as first made
            ctx.running.offer(seen)
        # every complete line was an evaluation, readable or not: new indices go past them
        indices = Indices(records, ctx.store.next_index(recorded), clean=recorded.lines == len(records))
        optimizer = replayed_optimizer(ctx, self.fitness, records, where.generation)
        Scheduler(ctx, self.fitness, executor, optimizer, notifier, records, indices, where, progress).run()
        executor.close()  # the local worker lets go of its model before the run's end merges candidates again
        return self.evidence.finish(records, inputs, notifier)

    def _restore(self, records: list[CandidateRecord], evaluations: int) -> Progress:
        """Where the search stands: a new run's first checkpoint, or the latest one (checked by `_check_log`) with
        the estimator's fit and the audit's state it saved."""
        ctx = self.ctx
        checkpoint = ctx.store.latest_checkpoint()
        if checkpoint is None:
            ctx.store.save_checkpoint(0, {"elapsed": 0.0})
            return Progress(0, 0.0, evaluations, {"since": 0, "refits": []})
        generation, state = checkpoint
        if state.get("legacy"):
            ctx.log(
                f"checkpoint gen-{generation:04d}.pkl comes from an earlier version: pickles are never opened, so "
                "the optimizer is rebuilt from the records; its time budget restarts from the records' seconds"
                + ("" if ctx.audit is None else ", and an audited estimator's refits are not restored")
            )
            state = {"elapsed": float(sum(r.seconds for r in records))}
            # a checkpoint N was written once generations before N were complete: never past the records
            generation = min(generation, 1 + max((r.generation for r in records), default=-1))
        if state.get("estimator") is not None:
            ctx.estimator.set_state(state["estimator"])
        ctx.log(f"resuming at generation {generation} with {len(records)} recorded candidates")
        elapsed = float(state.get("elapsed", 0.0))
        return Progress(generation, elapsed, evaluations, state.get("audit") or {"since": 0, "refits": []})

    # ------------------------------------------------------------------------------ parts a caller may ask for

    def replayed_optimizer(self, records: list[CandidateRecord], generations: int) -> Any:
        """A new optimizer told the recorded generations before `generations`, as a resume rebuilds it."""
        return replayed_optimizer(self.ctx, self.fitness, records, generations)
