"""Where candidates are merged and scored: the executor interface, the work it carries, and the core's `local`
executor (in the run's own process, one candidate at a time).

The run's process (the driver, `search.Evolution`) keeps everything that decides: the optimizer, the estimator,
the audit, the records. An executor only merges and scores: it takes `Job`s and hands back `Outcome`s in any order.
That split is what makes a dead worker cheap: the driver records each result the moment it arrives, and a job that
never came back is simply run again. An executor plugin (Ray: `plugins/ray`) runs `Worker`s elsewhere; the local
executor runs the driver's own, sharing its merger, so nothing is loaded twice.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from mergekit_evo.plugin.errors import NoOptions, parse_plugin_options
from mergekit_evo.plugin.hookspecs import hookimpl
from mergekit_evo.scoring.splits import with_validation
from mergekit_evo.threads import CoreWatch

if TYPE_CHECKING:
    from mergekit_evo.config import EvolveConfig
    from mergekit_evo.merge.base import LoadedModel, Merger
    from mergekit_evo.scoring.tasks import TaskBackend


@dataclass(frozen=True)
class Job:
    """One candidate to merge and score: its recipe, mergekit's seed for it, and the items to score per task.

    `audit` marks the follow-up of an earlier job of the same candidate (every search item, for the estimator
    audit); a worker that still holds that candidate's model scores it without merging again.
    """

    index: int
    merge_yaml: str
    seed: int
    items: Mapping[str, list[int]]  # task name -> indices into the task's search items
    audit: bool = False


@dataclass(frozen=True)
class Outcome:
    """What a worker made of a job: per-item scores by task, or the error that stopped it."""

    job: Job
    scores: dict[str, list[float]] | None
    error: str | None
    seconds: float
    device: str  # where mergekit's arithmetic ran (part of a seeded method's result)
    worker: str

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class WorkerSpec:
    """All a worker elsewhere needs to build itself: the run's config and the plugin classes the driver resolved
    (so `providers:` choices and plugins registered in code reach it), and a recipe to merge once when it starts."""

    config: EvolveConfig
    merger: type[Merger]
    backends: Mapping[str, type[TaskBackend]]  # task name -> its backend's class
    warm_yaml: str


def build_tasks(config: EvolveConfig, backends: Mapping[str, Any]) -> dict[str, TaskBackend]:
    """The run's task backends by name, each with its validation share held back as the run holds it."""
    return {t.name: with_validation(backends[t.name](config=t), config.seed) for t in config.tasks}


class Worker:
    """Merges and scores candidates with one merger and the run's task backends: what every executor runs.

    It keeps the last candidate's model until the next job, so an audit follow-up merges nothing again. A job that
    raises comes back as an `Outcome` with the error: a broken candidate is data, not a crash.
    """

    def __init__(self, merger: Merger, tasks: Mapping[str, TaskBackend], name: str = "local"):
        self.merger, self.tasks, self.name = merger, tasks, name
        self._kept: tuple[tuple[int, str, int], contextlib.ExitStack, LoadedModel] | None = None
        self.cores = CoreWatch()  # torch's threads, fitted to the cores other processes leave free, before each job

    @classmethod
    def build(cls, spec: WorkerSpec, name: str) -> Worker:
        return cls(spec.merger(config=spec.config), build_tasks(spec.config, spec.backends), name)

    def warm(self, merge_yaml: str) -> None:
        """Load the sources now (by merging `merge_yaml` once), so a missing file or a lack of memory shows at the
        start, not in the first candidate, and the first candidate costs what every other does."""
        from mergekit_evo.merge.base import parse_merge_config

        with self.merger.merged(parse_merge_config(merge_yaml), seed=0):
            pass

    def _model(self, job: Job) -> LoadedModel:
        from mergekit_evo.merge.base import parse_merge_config

        key = (job.index, job.merge_yaml, job.seed)
        if self._kept is not None and self._kept[0] == key:
            return self._kept[2]
        self.release()
        stack = contextlib.ExitStack()
        try:
            model = stack.enter_context(self.merger.merged(parse_merge_config(job.merge_yaml), seed=job.seed))
        except BaseException:
            stack.close()
            raise
        self._kept = (key, stack, model)
        return model

    def release(self) -> None:
        """Let go of the kept model (a merger may reuse or free its memory)."""
        if self._kept is not None:
            kept, self._kept = self._kept, None
            kept[1].close()

    def run(self, job: Job) -> Outcome:
        started = time.perf_counter()
        try:
            self.cores.fit()
            model = self._model(job)
            scores = {
                name: [float(s) for s in self.tasks[name].score(model, indices)] for name, indices in job.items.items()
            }
            error = None
        except Exception as e:
            self.release()
            scores, error = None, f"{type(e).__name__}: {e}"
        return Outcome(job, scores, error, round(time.perf_counter() - started, 3), self.merger.merge_device, self.name)


class Executor(ABC):
    """Runs jobs on workers and hands back their outcomes as they finish. Subclass it, declare `Options`, and
    register the class with `register_executors`; the run builds it once as `cls(options=)` and calls `start`,
    then `submit` and `next_outcome` until it has what it asked for, then `close` (also after an error).

    An executor never writes into the run directory and never decides anything about a result: a job whose worker
    died is its to run again (up to its own retry limit), and then to hand back as an `Outcome` with the error.
    """

    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, *, options: dict):
        self.options: Any = parse_plugin_options(self.Options, options, "executor.options")

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Refuse bad options when the run is configured, before anything is loaded; raise `UserError`."""
        parse_plugin_options(cls.Options, options, "executor.options")

    def describe(self) -> str:
        """One line for the run's log: where candidates are scored."""
        return f"executor: {type(self).__name__}"

    @abstractmethod
    def start(self, spec: WorkerSpec, here: Worker, log: Callable[[str], None]) -> None:
        """Get the workers ready. `here` is a worker in the driver's process sharing the run's merger (the local
        executor uses it); others build theirs from `spec`. A worker that cannot load the models raises `UserError`
        naming the worker and the cause."""

    @property
    @abstractmethod
    def workers(self) -> int:
        """How many jobs can run at once: the run keeps this many in flight when its optimizer allows."""

    @abstractmethod
    def submit(self, job: Job, prefer: str | None = None) -> None:
        """Queue a job; `prefer` names the worker that may still hold its model (an audit's follow-up)."""

    @abstractmethod
    def next_outcome(self) -> Outcome:
        """The next finished job's outcome, waiting for one; only called while jobs are pending."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """Jobs submitted whose outcome has not been handed back."""

    def close(self) -> None:
        """Stop the workers (the run calls it once, also when it stops on an error)."""


class LocalExecutor(Executor):
    """In the run's own process, one job at a time, in the order submitted (an audit's follow-up first, while its
    model is still loaded): exactly the loop the run had before executors existed."""

    def __init__(self, *, options: dict):
        super().__init__(options=options)
        self._queue: deque[Job] = deque()
        self._worker: Worker | None = None

    def describe(self) -> str:
        return "executor: local (candidates merged and scored one at a time in this process)"

    def start(self, spec: WorkerSpec, here: Worker, log: Callable[[str], None]) -> None:
        self._worker = here

    @property
    def workers(self) -> int:
        return 1

    def submit(self, job: Job, prefer: str | None = None) -> None:
        if job.audit:
            self._queue.appendleft(job)
        else:
            self._queue.append(job)

    def next_outcome(self) -> Outcome:
        assert self._worker is not None, "start() first"
        return self._worker.run(self._queue.popleft())

    @property
    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.release()


@hookimpl
def register_executors(register):
    register("local", LocalExecutor)
