"""Observers: what watches a run without steering it (trackers such as W&B and MLflow).

Two ways in, both called in the run's own process as each candidate is recorded, each generation ends and the run
ends:
- the hooks `on_candidate_scored`, `on_generation_end` and `on_run_end`: every installed plugin that implements them
  hears every run;
- an `Observer` subclass registered with `register_observers`: built only for a run whose config names it under
  `observers:`, with its options validated when the run is configured. Trackers are observers, so installing one does
  not log every run on the machine (or every test).

Either kind that raises is reported once, in one line naming it, and the run goes on: a tracker that lost its network
must not cost an evolution, and the record it was told about is already safe on disk. Observers read the run
directory and never write into it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel

from mergekit_evo.plugin.errors import NoOptions, parse_plugin_options
from mergekit_evo.rank.ranking import RunningBest, guarded, score_by
from mergekit_evo.store.files import read_inside
from mergekit_evo.store.runs import RunStore

if TYPE_CHECKING:
    from mergekit_evo.config import EvolveConfig
    from mergekit_evo.plugin.manager import PluginManager, Registry
    from mergekit_evo.store.runs import CandidateRecord


class Observer:
    """Watches one run. Subclass it, declare `Options`, register it with `register_observers`; a run whose config
    lists it under `observers:` builds it once as `cls(options=, run_dir=, config=)` when the run starts or resumes
    (after its records are read), then calls the three methods below as the hooks of the same names fire, and `close`
    whatever ends the run. Every method may raise: it is reported once and the run goes on.

    The helpers below give a tracker what to log as flat name -> number mappings, so every tracker logs the same
    things under the same names."""

    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, *, options: dict, run_dir: Path, config: EvolveConfig):
        self.options: Any = parse_plugin_options(self.Options, options, "observers.options")
        self.run_dir = Path(run_dir)
        self.config = config
        # the leader by the run's own rule, fed what the run is fed (`Notifier.candidate_scored`); a resumed run goes
        # on from its records (the run itself reports what it cannot read)
        self.running = RunningBest(config.best_by, guarded(config))
        for record in RunStore(self.run_dir, log=lambda _: None).records():
            self.running.offer(record)

    @property
    def best_so_far(self) -> float | None:
        """The leader's score by the run's rule (`ranking`): the candidate best.yaml holds at this point of the run."""
        best = self.running.best
        return None if best is None else score_by(best, self.config.best_by)

    # ------------------------------------------------------------------ what a tracker logs, in flat form

    @property
    def tracking_id(self) -> str:
        """An id that names this run directory's run in a tracker, the same when it resumes: a resumed run goes on
        in the tracker's run it started, and another run (another folder or fingerprint) never lands there."""
        fingerprint = read_inside(self.run_dir, RunStore.FINGERPRINT) or b""
        return hashlib.sha256(str(self.run_dir.resolve()).encode() + b"\0" + fingerprint).hexdigest()[:16]

    def candidate_metrics(self, record: CandidateRecord) -> dict[str, float]:
        """One candidate as flat numbers: `index`, `generation`, `ok`, `seconds`; and when scored `fitness`, each
        task's `task/NAME` estimate, `objective/NAME` (multi-objective runs), `full_fitness` (audited) and each gene's
        `gene/NAME` value."""
        out: dict[str, float] = {
            "index": record.index,
            "generation": record.generation,
            "ok": float(record.ok),
            "seconds": record.seconds,
        }
        if record.ok and record.fitness is not None:
            out["fitness"] = record.fitness
            out.update({f"task/{name}": task["estimate"] for name, task in record.tasks.items()})
            names = self.config.objective_names()
            if record.objectives and len(names) > 1:
                out.update({f"objective/{name}": v for name, v in zip(names, record.objectives)})
            if record.audit is not None:
                out["full_fitness"] = record.audit["fitness"]
        out.update({f"gene/{name}": value for name, value in record.genes.items()})
        return out

    def generation_metrics(self, generation: int, records: list[CandidateRecord]) -> dict[str, float]:
        """A generation as flat numbers: `generation`, `failed`, and over its scored members `best`, `mean`, `std`,
        `worst` fitness, with `best_so_far`: the leader's score over the whole run by the run's rule (`ranking`: an
        audited candidate by its full score), the one best.yaml holds."""
        scored = np.array([r.fitness for r in records if r.ok and r.fitness is not None], dtype=float)
        out: dict[str, float] = {"generation": generation, "failed": float(sum(not r.ok for r in records))}
        if len(scored):
            out.update(
                best=float(scored.max()), mean=float(scored.mean()), std=float(scored.std()), worst=float(scored.min())
            )
        if self.best_so_far is not None:
            out["best_so_far"] = self.best_so_far
        return out

    def result_files(self) -> list[Path]:
        """The run's results a tracker keeps as artifacts, those that exist: best.yaml, report.md, report.html,
        config.yaml (never a link: a tracker must not upload what a link points at outside the folder)."""
        names = (RunStore.BEST, RunStore.REPORT, RunStore.REPORT_HTML, RunStore.CONFIG)
        return [self.run_dir / n for n in names if (self.run_dir / n).is_file() and not (self.run_dir / n).is_symlink()]

    def heldout(self) -> dict[str, float]:
        """The chosen merge's held-out score per task (`heldout/NAME`), once the run has ended; empty before."""
        saved = RunStore(self.run_dir, log=lambda _: None).read_json(RunStore.BEST_HELDOUT) or {}
        return {f"heldout/{task}": float(v) for task, v in (saved.get("heldout") or {}).items()}

    @classmethod
    def check_options(cls, options: dict, field: str) -> None:
        """Refuse bad options when the run is configured, before anything is loaded; raises `UserError`."""
        parse_plugin_options(cls.Options, options, field)

    def on_candidate_scored(self, record: CandidateRecord) -> None:
        """A candidate was appended to candidates.jsonl (failed ones too)."""

    def on_generation_end(self, generation: int, records: list[CandidateRecord]) -> None:
        """A generation was told to the optimizer and checkpointed; `records` in the order they were asked."""

    def on_run_end(self, best: CandidateRecord | None) -> None:
        """The budget is spent and best.yaml, report.md and report.html are written."""

    def close(self, finished: bool) -> None:
        """The run is over in this process: `finished` after `on_run_end`, False when it stopped early (an error or an
        interrupt; `resume` builds the observer again)."""


class Notifier:
    """The run's observers and hook implementations, each called on its own so one that raises cannot stop the
    others or the run. The first error of each is logged in one line; the count of further ones at `close`."""

    def __init__(self, pm: PluginManager, run_dir: Path, log: Callable[[str], None]):
        self.pm = pm
        self.run_dir = run_dir
        self.log = log
        self.observers: dict[str, Observer] = {}
        self.errors: dict[str, int] = {}

    @classmethod
    def build(
        cls, config: EvolveConfig, reg: Registry, pm: PluginManager, run_dir: Path, log: Callable[[str], None]
    ) -> Notifier:
        """The configured observers, built now; one that cannot start (no network, a missing login) is reported once
        and left out, and the run goes on without it."""
        notifier = cls(pm, run_dir, log)
        for entry in config.observers:
            factory = reg.get("observers", entry.name, "observers", config.providers)
            built = notifier._call(
                f"observer {entry.name}", "start", factory, options=entry.options, run_dir=run_dir, config=config
            )
            if built is not None:
                notifier.observers[entry.name] = built
        return notifier

    def _call(self, who: str, where: str, function: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return function(**kwargs)
        except Exception as e:  # an observer must never take the run down; its record is already on disk
            self.errors[who] = self.errors.get(who, 0) + 1
            if self.errors[who] == 1:
                message = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
                self.log(
                    f"{who} failed in {where} ({type(e).__name__}{': ' + message if message else ''}); "
                    "the run goes on, and its further errors are counted, not shown"
                )
            return None

    def _notify(self, hook: str, **kwargs: Any) -> None:
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            wanted = {
                name: value for name, value in {**kwargs, "run_dir": self.run_dir}.items() if name in impl.argnames
            }
            self._call(f"plugin {self.pm.get_name(impl.plugin)}", hook, impl.function, **wanted)
        for name, observer in self.observers.items():
            self._call(f"observer {name}", hook, getattr(observer, hook), **kwargs)

    def candidate_scored(self, record: CandidateRecord) -> None:
        for observer in self.observers.values():
            observer.running.offer(record)  # before the observer hears of it, as the run's own leader is
        self._notify("on_candidate_scored", record=record)

    def generation_end(self, generation: int, records: list[CandidateRecord]) -> None:
        self._notify("on_generation_end", generation=generation, records=records)

    def run_end(self, best: CandidateRecord | None) -> None:
        self._notify("on_run_end", best=best)

    def close(self, finished: bool) -> None:
        for name, observer in self.observers.items():
            self._call(f"observer {name}", "close", observer.close, finished=finished)
        for who, count in self.errors.items():
            if count > 1:
                self.log(f"{who} failed {count} times in this run")
