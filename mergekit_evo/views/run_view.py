"""`RunView`: everything the report and the dashboard show, read from a run directory without writing to it.

The run directory is the single source of truth: a view is a snapshot of its files taken by a reader (no lock, no
repair), so it may be taken while the run goes on. A file the run has not written yet is simply absent from the view:
a live run has candidates but no baselines or held-out scores until it ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mergekit_evo.config import EvolveConfig
from mergekit_evo.rank.pareto import pareto_front
from mergekit_evo.rank.ranking import chosen, guarded
from mergekit_evo.store.lock import RunLock
from mergekit_evo.store.runs import CandidateRecord, RunStore

# the files whose change a live view shows: their sizes and times make the view's version
WATCHED = (
    RunStore.CANDIDATES,
    RunStore.INPUTS,
    RunStore.BASELINES,
    RunStore.BEST_HELDOUT,
    RunStore.AUDIT,
    RunStore.FULL_SEARCH,
    RunStore.VALIDATION,
    RunStore.REPORT,
)


@dataclass
class RunView:
    path: Path
    config: EvolveConfig
    records: list[CandidateRecord]
    unreadable: int  # lines of candidates.jsonl that could not be read (reported, skipped, kept)
    writer: str | None  # the pid writing the run now, None when nothing does
    inputs: dict[str, dict] = field(default_factory=dict)
    baselines: dict[str, dict] = field(default_factory=dict)
    best_heldout: dict | None = None
    full_search: dict | None = None  # top-k candidates on every search item (cheap estimators), by index
    audit: dict | None = None
    selection: dict | None = None
    responses: list[dict] = field(default_factory=list)  # whole-item-set scores an estimator learned from
    estimator_state: Any = None  # the estimator's state at the latest checkpoint (after its refits), if any
    genome_layout: list[dict] | None = None  # each gene as the run described it (genome.json; None before it)
    calibration: list[list] | None = None  # a learning estimator's (estimate, truth, label) per calibration merge
    report_md: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def ok(self) -> list[CandidateRecord]:
        return [r for r in self.records if r.ok and r.fitness is not None]

    ended: bool = False  # report.md is newer than the last record: the run reached its end (and was not extended)
    version: str = ""  # the run's `version` taken before its files were read: a change after that shows as new

    @property
    def running(self) -> bool:
        return self.writer is not None and self.writer != str(os.getpid())

    @property
    def finished(self) -> bool:
        return self.ended and not self.running

    @property
    def status(self) -> str:
        if self.running:
            return f"running (pid {self.writer})"
        return "finished" if self.finished else "stopped (`mergekit-evo resume` continues it)"

    @property
    def chosen(self) -> CandidateRecord | None:
        """The run's chosen merge once it has ended (best_heldout.json names it); before, the leader: what best.yaml
        holds, by the run's rule (`ranking`)."""
        final = None if self.best_heldout is None else self.best_heldout.get("index")
        return chosen(self.records, self.config.best_by, guarded(self.config), final)

    @property
    def pareto(self) -> list[CandidateRecord]:
        return pareto_front(self.records) if self.config.objectives == "separate" else []

    @property
    def best_yaml(self) -> str | None:
        chosen = self.chosen
        return None if chosen is None else chosen.merge_yaml


def version(path: Path) -> str:
    """A token that changes when any file a view shows changes, or the process writing the run comes or goes: what
    a live page polls for."""
    parts = [RunLock(path, RunStore.LOCK).holder() or "-"]
    for name in WATCHED:
        try:
            stat = os.lstat(path / name)
            parts.append(f"{stat.st_size}.{stat.st_mtime_ns}")
        except OSError:
            parts.append("-")
    return "/".join(parts)


def _estimator_state(store: RunStore) -> Any:
    """What the estimator had learned at the latest checkpoint (JSON; a damaged one is reported and skipped)."""
    latest = store.latest_checkpoint()
    return None if latest is None else latest[1].get("estimator")


def load_view(path: Path, log: Callable[[str], None] | None = None) -> RunView:
    """A snapshot of the run in `path`; raises `UserError` when it is not a run directory."""
    before = version(Path(path))
    store, config = RunStore.open(Path(path), log)
    read = store.read_records()
    report = store.file(RunStore.REPORT)
    return RunView(
        path=store.path,
        config=config,
        records=read.rows,
        unreadable=len(read.bad),
        writer=store.writer(),
        inputs=store.read_json(RunStore.INPUTS) or {},
        baselines=store.read_json(RunStore.BASELINES) or {},
        best_heldout=store.read_json(RunStore.BEST_HELDOUT),
        full_search=store.read_json(RunStore.FULL_SEARCH),
        audit=store.read_json(RunStore.AUDIT),
        selection=store.read_json(RunStore.SELECTION),
        responses=store.read_log(store.responses_path, dict).rows if store.responses_path.exists() else [],
        estimator_state=_estimator_state(store) if config.estimator.name != "full" else None,
        genome_layout=(store.read_json(RunStore.GENOME) or {}).get("genes"),
        calibration=(store.read_json(RunStore.CALIBRATION) or {}).get("points"),
        report_md=store.read_text(RunStore.REPORT),
        ended=os.path.lexists(report) and _mtime(report) >= _mtime(store.candidates_path),
        version=before,
    )


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0
