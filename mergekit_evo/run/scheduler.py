"""The search loop's bookkeeping: the generations asked and not yet told, the members waiting for a worker, the jobs
in flight, and the order in which records are written, told and checkpointed.

A generation is told only once every member has a record, in generation order; an optimizer that says
`asynchronous` may have the next generation asked while one finishes. Members with a recipe already scored are
recorded as copies, and members whose recipe is being scored wait for that job.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from mergekit_evo.estimate.audit import NEW_BEST, describe
from mergekit_evo.rank.ranking import score_by
from mergekit_evo.run.asking import asked
from mergekit_evo.run.context import RunContext
from mergekit_evo.run.executors import Executor
from mergekit_evo.run.fitness import Fitness
from mergekit_evo.run.optimizers import tell
from mergekit_evo.store.runs import CandidateRecord, RunStore
from mergekit_evo.views.observers import Notifier


@dataclass
class OpenGeneration:
    """A generation asked and not yet told: its genomes, its members' objectives as they are recorded, its bar."""

    xs: np.ndarray
    fitness: np.ndarray
    bar: tqdm


class Indices:
    """Candidate indices, given in member order when a generation is asked, so a seed gives the same indices (and
    mergekit seeds) whatever order results come back in. A member a resumed generation lacks gets the index it was
    first given (its generation's first index plus its member number) when the log is clean and no record holds
    that index; otherwise a new one past every index."""

    def __init__(self, records: list[CandidateRecord], next_index: int, clean: bool):
        self.next = next_index
        self.used = {r.index for r in records}
        self.first: dict[int, int] = {}
        if clean:
            for r in records:
                self.first.setdefault(r.generation, r.index - r.member)
        self.given: dict[tuple[int, int], int] = {}

    def plan(self, generation: int, member: int) -> None:
        first = self.first.get(generation)
        planned = None if first is None else first + member
        index = planned if planned is not None and planned >= 0 and planned not in self.used else self.next
        self.first.setdefault(generation, index - member)
        self.used.add(index)
        self.given[(generation, member)] = index
        self.next = max(self.next, index + 1)

    def of(self, generation: int, member: int) -> int:
        return self.given[(generation, member)]


@dataclass
class Progress:
    """Where the search stands, as a checkpoint restores it: the next generation to ask (and tell), the seconds
    spent, the evaluations counted (every complete line of the log, readable or not) and the audit's state."""

    generation: int
    elapsed: float  # seconds the run has searched, over all its sessions
    evaluations: int
    audit_state: dict[str, Any]


class Scheduler:
    """Runs the search from `progress` until the budget is spent and every job is back: asks, sends, records,
    tells and checkpoints. `records` is the run's list of records, extended in the order they are written."""

    def __init__(
        self,
        ctx: RunContext,
        fitness: Fitness,
        executor: Executor,
        optimizer: Any,
        notifier: Notifier,
        records: list[CandidateRecord],
        indices: Indices,
        progress: Progress,
        show_progress: bool,
    ):
        self.ctx, self.fitness, self.executor, self.optimizer, self.notifier = (
            ctx,
            fitness,
            executor,
            optimizer,
            notifier,
        )
        self.records = records
        self.indices = indices
        self.progress = progress
        self.show_progress = show_progress
        self.by_position = {(r.generation, r.member): r for r in records}
        self.by_yaml = {r.merge_yaml: r for r in records if r.ok}
        self.best = ctx.running.best
        self.asynchronous = bool(getattr(ctx.optimizer_cls, "asynchronous", False))
        self.open: dict[int, OpenGeneration] = {}  # asked and not yet told, by number
        self.queue: deque[tuple[int, int]] = deque()  # (generation, member) asked, unrecorded, not yet sent
        self.flight: dict[int, dict[str, Any]] = {}  # index -> the candidate's fields, while its job is out
        self.sending: dict[str, int] = {}  # merge_yaml -> the index of the job out for it
        self.waiting: dict[str, list[tuple[int, int]]] = {}  # merge_yaml -> members waiting for that job's record
        self.to_ask = self.to_tell = progress.generation
        self.started = time.perf_counter() - progress.elapsed  # when the run would have started, had it never stopped

    def run(self) -> None:
        try:
            while True:
                self.tell_complete()
                if self.may_ask():
                    self.ask()
                    self.send()
                    continue
                if not self.executor.pending:
                    break
                record = self.fitness.completed(self.executor.next_outcome(), self.flight, self.executor)
                if record is not None:
                    self.record(record)
                self.send()
        finally:
            for open_gen in self.open.values():
                open_gen.bar.close()

    def fields(self, x: np.ndarray, generation: int, member: int) -> dict[str, Any]:
        """What a candidate's record says before it is scored."""
        index = self.indices.of(generation, member)
        genome = self.ctx.genome
        return dict(
            index=index,
            generation=generation,
            member=member,
            genome=[float(v) for v in x],
            genes=genome.values(x),
            merge_yaml=genome.to_yaml(x),
            seed=zlib.crc32(f"{self.ctx.config.seed}:{index}".encode()),
            device=self.ctx.merger.merge_device,
        )

    def record(self, record: CandidateRecord) -> None:
        """Write a new record, then let members waiting for its recipe go next."""
        running = self.ctx.running
        if record.audit is not None and NEW_BEST in record.audit["reason"]:
            record = dataclasses.replace(record, audit={**record.audit, "accepted": running.accepts(record)})
        self.progress.evaluations += 1
        self.ctx.store.append(record)
        self.records.append(record)
        self.by_position[(record.generation, record.member)] = record
        if record.ok:
            self.by_yaml.setdefault(record.merge_yaml, record)
        self.notifier.candidate_scored(record)
        sent = self.sending.pop(record.merge_yaml, None)
        if sent == record.index:  # members with the same recipe go next, as copies of it where it scored
            self.queue.extendleft(reversed(self.waiting.pop(record.merge_yaml, [])))
        self.place(record)

    def place(self, record: CandidateRecord) -> None:
        """A record into its open generation and the running best (best.yaml follows the leader)."""
        open_gen = self.open[record.generation]
        if record.ok:
            open_gen.fitness[record.member] = record.objectives
        self.ctx.running.offer(record)
        if self.ctx.running.best is not self.best:
            self.best = self.ctx.running.best
            assert self.best is not None
            self.ctx.store.write_text(RunStore.BEST, self.best.merge_yaml)
        open_gen.bar.update(1)
        open_gen.bar.set_postfix(
            best=f"{score_by(self.best, self.ctx.config.best_by):.4f}" if self.best else "-",
            failed=sum(not r.ok for r in self.records),
        )

    def send(self) -> None:
        """Members to workers while one is free; a recipe already scored is copied, one being scored waits."""
        while self.queue and self.executor.pending < self.executor.workers:
            g, m = self.queue.popleft()
            fields = self.fields(self.open[g].xs[m], g, m)
            text = fields["merge_yaml"]
            if text in self.sending:
                self.waiting.setdefault(text, []).append((g, m))
                continue
            twin = self.by_yaml.get(text)
            copy = self.fitness.twin_record(fields, twin) if twin is not None else None
            if copy is not None:
                self.record(copy)
                continue
            self.flight[fields["index"]] = {"fields": fields}
            self.sending[text] = fields["index"]
            self.executor.submit(self.fitness.job(fields))

    def budget_left(self, n_records: int, generation: int, seconds: float) -> bool:
        b = self.ctx.config.budget
        return not (
            (b.max_evaluations is not None and n_records >= b.max_evaluations)
            or (b.max_generations is not None and generation >= b.max_generations)
            or (b.max_seconds is not None and seconds >= b.max_seconds)
        )

    def may_ask(self) -> bool:
        unrecorded = sum(
            (g, m) not in self.by_position for g, open_gen in self.open.items() for m in range(len(open_gen.xs))
        )
        seconds = time.perf_counter() - self.started
        if not self.budget_left(self.progress.evaluations + unrecorded, self.to_ask, seconds):
            return False
        if not self.open:
            return True
        # an optimizer whose asks never wait on its tells: the next generation starts while this one finishes
        executor = self.executor
        return self.asynchronous and not self.queue and executor.pending < executor.workers and len(self.open) < 2

    def ask(self) -> None:
        xs = asked(self.ctx, self.optimizer)
        bar = tqdm(total=len(xs), desc=f"generation {self.to_ask}", disable=not self.show_progress, leave=True)
        n_objectives = len(self.ctx.config.objective_names())
        self.open[self.to_ask] = OpenGeneration(xs, np.full((len(xs), n_objectives), np.nan), bar)
        for member in range(len(xs)):
            record = self.by_position.get((self.to_ask, member))
            if record is None:
                self.indices.plan(self.to_ask, member)
                self.queue.append((self.to_ask, member))
            else:
                self.place(record)
        self.to_ask += 1

    def tell_complete(self) -> None:
        """Tell every complete generation, in order; after each: the audit's refit and figures, a checkpoint."""
        ctx = self.ctx
        while self.to_tell in self.open and all(
            (self.to_tell, m) in self.by_position for m in range(len(self.open[self.to_tell].xs))
        ):
            done = self.open.pop(self.to_tell)
            done.bar.close()
            members = [self.by_position[(self.to_tell, m)] for m in range(len(done.xs))]
            tell(self.optimizer, done.xs, done.fitness, functools.partial(self.fitness.item_scores, members))
            audit_state = self.progress.audit_state
            if ctx.audit is not None:
                if ctx.audit.refit_error is not None:
                    self.fitness.refit_if_drifting(self.records, self.to_tell, audit_state)
                ctx.log(describe(self.fitness.write_audit(self.records, audit_state)))
            self.to_tell += 1
            ctx.store.save_checkpoint(
                self.to_tell,
                {
                    "elapsed": time.perf_counter() - self.started,
                    "estimator": ctx.estimator.get_state(),
                    "audit": audit_state,
                },
            )
            self.notifier.generation_end(self.to_tell - 1, members)
