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

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from mergekit_evo.errors import NoOptions, parse_plugin_options

if TYPE_CHECKING:
    from mergekit_evo.config import EvolveConfig
    from mergekit_evo.plugins import PluginManager, Registry
    from mergekit_evo.runs import CandidateRecord


class Observer:
    """Watches one run. Subclass it, declare `Options`, register it with `register_observers`; a run whose config
    lists it under `observers:` builds it once as `cls(options=, run_dir=, config=)` when the run starts or resumes
    (after its records are read), then calls the three methods below as the hooks of the same names fire, and `close`
    whatever ends the run. Every method may raise: it is reported once and the run goes on."""

    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, *, options: dict, run_dir: Path, config: EvolveConfig):
        self.options: Any = parse_plugin_options(self.Options, options, "observers.options")
        self.run_dir = run_dir
        self.config = config

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

    HOOKS = ("on_candidate_scored", "on_generation_end", "on_run_end")

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
            built = notifier._call(entry.name, "start", factory, options=entry.options, run_dir=run_dir, config=config)
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
                    f"observer {who} failed in {where} ({type(e).__name__}{': ' + message if message else ''}); "
                    "the run goes on, and its further errors are counted, not shown"
                )
            return None

    def _notify(self, hook: str, **kwargs: Any) -> None:
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            wanted = {
                name: value for name, value in {**kwargs, "run_dir": self.run_dir}.items() if name in impl.argnames
            }
            self._call(self.pm.get_name(impl.plugin) or "a plugin", hook, impl.function, **wanted)
        for name, observer in self.observers.items():
            self._call(name, hook, getattr(observer, hook), **kwargs)

    def candidate_scored(self, record: CandidateRecord) -> None:
        self._notify("on_candidate_scored", record=record)

    def generation_end(self, generation: int, records: list[CandidateRecord]) -> None:
        self._notify("on_generation_end", generation=generation, records=records)

    def run_end(self, best: CandidateRecord | None) -> None:
        self._notify("on_run_end", best=best)

    def close(self, finished: bool) -> None:
        for name, observer in self.observers.items():
            self._call(name, "close", observer.close, finished=finished)
        for who, count in self.errors.items():
            if count > 1:
                self.log(f"observer {who} failed {count} times in this run")
