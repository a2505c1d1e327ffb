"""The `ray` executor: each worker a Ray actor holding its own merger and task backends, warm across candidates.

The run's process (the driver) keeps deciding and recording; this module only moves jobs to actors and outcomes
back. An actor that dies mid-candidate (killed, out of memory, its node gone) is replaced by a fresh one, which
loads the sources again, and its candidate is run again up to `max_retries` times; after that the candidate comes
back as failed with the cause, and the run goes on. An actor that cannot load the models at the start stops the
run in one line naming the worker and the cause.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mergekit_evo import Executor, Job, Outcome, UserError, Worker, WorkerSpec, parse_plugin_options


class RayOptions(BaseModel):
    """`executor.options` of `executor: ray`."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None,
        description="unset: start a Ray instance on this machine; 'auto' joins the cluster `ray start --head` made "
        "here, 'ray://HOST:10001' one elsewhere",
    )
    workers: int | None = Field(
        None, ge=1, description="how many actors; default: as many as the cluster's GPUs (or CPUs) allow"
    )
    num_cpus: float = Field(1, gt=0, description="CPUs each worker reserves (its torch threads)")
    num_gpus: float = Field(0, ge=0, description="GPUs each worker reserves; 0 for CPU-only workers")
    max_retries: int = Field(2, ge=0, description="times a candidate whose worker died is run again before it fails")


class _Actor:
    """The worker inside a Ray actor: built once, warm for the whole run."""

    def __init__(self, spec: WorkerSpec, name: str):
        self.spec, self.name = spec, name
        self.worker: Worker | None = None

    def warm(self) -> dict[str, Any]:
        import ray

        self.worker = Worker.build(self.spec, self.name)
        self.worker.warm(self.spec.warm_yaml)
        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": self.worker.merger.merge_device}

    def run(self, job: Job) -> Outcome:
        assert self.worker is not None, "warm() first"
        return self.worker.run(job)


@dataclass
class _Slot:
    """One worker as the driver sees it: its actor, what it is running (a job, or its warm-up), how many restarts."""

    name: str
    actor: Any
    job: Job | None = None
    warming: bool = True
    restarts: int = 0
    info: dict[str, Any] = field(default_factory=dict)  # from its warm-up: pid, node, device


def _cause(error: BaseException) -> str:
    """The first line of what went wrong, with Ray's wrapping taken off."""
    inner = getattr(error, "cause", None)
    if isinstance(inner, BaseException):
        error = inner
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _refuse_unfit(count: int, each: float, kind: str, available: float, where: str) -> None:
    """Refuse workers that need more of a resource than `where` has: Ray would wait for them for ever."""
    if count * each > available + 1e-9:
        raise UserError(
            f"executor.options: {count} workers of {each:g} {kind} need {count * each:g} {kind}s and {where} has "
            f"{available:g}; lower workers or num_{kind.lower()}s"
        )


class RayExecutor(Executor):
    """Candidates merged and scored in parallel by warm Ray actors, on this machine or on a Ray cluster."""

    Options = RayOptions

    def __init__(self, *, options: dict):
        super().__init__(options=options)
        self._slots: dict[str, _Slot] = {}
        self._queue: deque[tuple[Job, str | None]] = deque()
        self._running: dict[Any, str] = {}  # ObjectRef -> the slot running it
        self._attempts: dict[int, int] = {}  # job index -> times its worker died under it
        self._owns_ray = False
        self._spec: WorkerSpec | None = None
        self._log: Callable[[str], None] = print

    @classmethod
    def check_options(cls, options: dict) -> None:
        """The options, and for a Ray instance started here (no `address`), that the workers fit this machine: told
        before the run folder exists, where Ray itself would only tell once started."""
        parsed = parse_plugin_options(cls.Options, options, "executor.options")
        if parsed.address is not None or parsed.workers is None:
            return
        _refuse_unfit(parsed.workers, parsed.num_cpus, "CPU", os.cpu_count() or 1, "this machine")

    def describe(self) -> str:
        where = self.options.address or "a Ray instance on this machine"
        each = f"{self.options.num_cpus:g} CPU" + (f", {self.options.num_gpus:g} GPU" if self.options.num_gpus else "")
        count = self.options.workers or "auto"
        return f"executor: ray on {where}, {count} workers of {each} each"

    # ------------------------------------------------------------------------------ workers

    def start(self, spec: WorkerSpec, here: Worker, log: Callable[[str], None]) -> None:
        import ray

        self._spec, self._log = spec, log
        if not ray.is_initialized():
            try:
                ray.init(address=self.options.address, include_dashboard=False, log_to_driver=False)
            except Exception as e:  # no cluster at that address, a version mismatch...
                raise UserError(
                    f"executor.options.address: cannot reach Ray at {self.options.address}: {_cause(e)}"
                ) from None
            self._owns_ray = True
        resources = ray.cluster_resources()
        count = self.options.workers or self._default_workers(resources)
        for kind, each in (("CPU", self.options.num_cpus), ("GPU", self.options.num_gpus)):
            _refuse_unfit(count, each, kind, resources.get(kind, 0), "the Ray cluster")
        for i in range(count):
            self._launch(f"worker-{i}")
        for name in list(self._slots):
            self._wait_warm(name)
        nodes = sorted({s.info["node"] for s in self._slots.values()})
        log(f"executor: {count} Ray workers ready on {len(nodes)} node(s), sources loaded once each")

    def _default_workers(self, resources: dict[str, float]) -> int:
        if self.options.num_gpus > 0:
            return max(1, int(resources.get("GPU", 0) // self.options.num_gpus))
        return max(1, int(resources.get("CPU", 1) // self.options.num_cpus))

    def _launch(self, name: str) -> None:
        import ray

        actor: Any = (  # an actor handle: its methods are called with .remote()
            ray.remote(_Actor)
            .options(
                num_cpus=self.options.num_cpus,
                num_gpus=self.options.num_gpus,
                max_restarts=0,  # this executor replaces a dead actor itself, and says so
                max_task_retries=0,
            )
            .remote(self._spec, name)
        )
        slot = self._slots.get(name)
        restarts = 0 if slot is None else slot.restarts + 1
        self._slots[name] = _Slot(name, actor, restarts=restarts)
        self._running[actor.warm.remote()] = name

    def _wait_warm(self, name: str) -> None:
        import ray

        ref = next(r for r, n in self._running.items() if n == name)
        try:
            self._warmed(name, ray.get(ref))
        except Exception as e:
            raise UserError(f"executor: Ray worker {name} could not load the models: {_cause(e)}") from None
        finally:
            self._running.pop(ref, None)

    def _warmed(self, name: str, info: dict[str, Any]) -> None:
        slot = self._slots[name]
        slot.warming, slot.info = False, info

    def worker_pids(self) -> dict[str, int | None]:
        """Each worker's process id (on its node): what to kill -9 to test the recovery."""
        return {name: slot.info.get("pid") for name, slot in self._slots.items()}

    # ------------------------------------------------------------------------------ jobs

    @property
    def workers(self) -> int:
        return len(self._slots)

    @property
    def pending(self) -> int:
        return len(self._queue) + sum(1 for s in self._slots.values() if s.job is not None)

    def submit(self, job: Job, prefer: str | None = None) -> None:
        if job.audit:
            self._queue.appendleft((job, prefer))
        else:
            self._queue.append((job, prefer))
        self._dispatch()

    def _dispatch(self) -> None:
        """Every idle worker gets the next job; a job goes to the worker it prefers when that one is idle."""
        idle = [s for s in self._slots.values() if s.job is None and not s.warming]
        while idle and self._queue:
            job, prefer = self._queue.popleft()
            slot = next((s for s in idle if s.name == prefer), idle[0])
            idle.remove(slot)
            slot.job = job
            self._running[slot.actor.run.remote(job)] = slot.name

    def next_outcome(self) -> Outcome:
        import ray

        while True:
            self._dispatch()
            ready, _ = ray.wait(list(self._running), num_returns=1)
            ref = ready[0]
            name = self._running.pop(ref)
            slot = self._slots[name]
            try:
                value = ray.get(ref)
            except ray.exceptions.RayError as e:
                outcome = self._died(slot, e)
                if outcome is not None:
                    return outcome
                continue
            if slot.warming:  # a replacement is ready
                self._warmed(name, value)
                self._log(f"executor: {name} is back (restart {slot.restarts}, pid {slot.info['pid']})")
                continue
            slot.job = None
            return value

    def _died(self, slot: _Slot, error: BaseException) -> Outcome | None:
        """A worker died under a job (or while warming up again): replace it; run the job again or give it up."""
        import ray

        cause = _cause(error)
        if slot.warming:
            raise UserError(f"executor: Ray worker {slot.name} could not load the models: {cause}")
        job, slot.job = slot.job, None
        assert job is not None
        ray.kill(slot.actor, no_restart=True)
        self._launch(slot.name)
        tries = self._attempts[job.index] = self._attempts.get(job.index, 0) + 1
        if tries <= self.options.max_retries:
            self._log(
                f"executor: {slot.name} died while scoring candidate {job.index} ({cause}); "
                f"running it again ({tries} of {self.options.max_retries}) on the next free worker (a fresh one replaces it)"
            )
            self._queue.appendleft((job, None))
            return None
        self._log(f"executor: {slot.name} died while scoring candidate {job.index} ({cause}); recording it as failed")
        return Outcome(
            job,
            None,
            f"WorkerDied: Ray worker {slot.name} died {tries} time(s) while scoring it: {cause}",
            0.0,
            slot.info.get("device", "cpu"),
            slot.name,
        )

    def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        for slot in self._slots.values():
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # already gone
                pass
        self._slots.clear()
        self._running.clear()
        if self._owns_ray:
            ray.shutdown()
