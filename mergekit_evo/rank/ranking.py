"""Which candidate is best, and what the others are called: the selection rules `best_by` names ('weighted' or one
task) and the labels of the parents and plain merges, in one place.

`best.yaml`, `mergekit-evo best --by`, the finalists, the report, its figures, the dashboard and every observer rank
with these, so they can never disagree about which candidate leads or when it took the lead. A candidate the
estimator audit scored on every search item is ranked by that full score, which is the truth the estimate stands
for; the others by their estimate. So a contender whose full score fell short never leads, even where its estimate
is the highest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from mergekit_evo.model_files import model_label
from mergekit_evo.store.runs import CandidateRecord

if TYPE_CHECKING:
    from mergekit_evo.config import EvolveConfig


def estimate_by(record: CandidateRecord, by: str = "weighted") -> float:
    """A candidate's estimated score under a best-selection rule: its weighted fitness, or one task's estimate."""
    value = record.fitness if by == "weighted" else record.tasks[by]["estimate"]
    return cast(float, value)  # only scored records are ranked (`ranked` drops the others)


def full_by(record: CandidateRecord, by: str = "weighted") -> float | None:
    """The score under the rule on every search item, for an audited candidate; None for the others."""
    if record.audit is None:
        return None
    return cast(float, record.audit["fitness"] if by == "weighted" else record.audit["tasks"][by])


def score_by(record: CandidateRecord, by: str = "weighted") -> float:
    """A candidate's score under a best-selection rule: the full score when audited, the estimate otherwise."""
    full = full_by(record, by)
    return estimate_by(record, by) if full is None else full


def ranked(records: list[CandidateRecord], by: str = "weighted") -> list[CandidateRecord]:
    """The scored candidates, best first under the rule `by` ('weighted' or a task name); ties go to the earliest."""
    scored = [r for r in records if r.ok and r.fitness is not None and (by == "weighted" or by in r.tasks)]
    return sorted(scored, key=lambda r: (-score_by(r, by), r.index))


class RunningBest:
    """The best candidate so far, fed every record once in the order recorded: the rule of the leader.

    A record contends when its estimate beats every earlier contender's (the running record of estimates, so
    contenders are as rare as new bests are without an audit). Unguarded, a contender becomes the best. Guarded
    (`audit.new_best`, contenders audited), it becomes the best only if its full score is not below the best's:
    a flattering estimate cannot take the lead, and it still raises the bar for the next contender.
    """

    def __init__(self, by: str, guarded: bool):
        self.by, self.guarded = by, guarded
        self.best: CandidateRecord | None = None
        self.bar: float | None = None  # the highest estimate of any contender so far
        self._seen: set[int] = set()

    def contends(self, estimate: float) -> bool:
        return self.bar is None or estimate > self.bar

    def accepts(self, record: CandidateRecord) -> bool:
        """Whether the record would become the best now (a question: nothing changes)."""
        if not record.ok or record.fitness is None or (self.by != "weighted" and self.by not in record.tasks):
            return False
        if not self.contends(estimate_by(record, self.by)):
            return False
        if self.guarded and self.best is not None:
            mine, theirs = full_by(record, self.by), full_by(self.best, self.by)
            if mine is not None and theirs is not None and mine < theirs:
                return False
        return True

    def offer(self, record: CandidateRecord) -> bool:
        """Consider a record (a record seen before is ignored); True when it becomes the best."""
        if record.index in self._seen:
            return False
        self._seen.add(record.index)
        accepted = self.accepts(record)
        if record.ok and record.fitness is not None and (self.by == "weighted" or self.by in record.tasks):
            estimate = estimate_by(record, self.by)
            if self.contends(estimate):
                self.bar = estimate
        if accepted:
            self.best = record
        return accepted


def guarded(config: EvolveConfig) -> bool:
    """Whether the run's leader must pass the audit's guard (`estimator.audit.new_best`)."""
    audit = config.estimator.audit
    return audit is not None and audit.new_best


def leaders(records: list[CandidateRecord], by: str = "weighted", guard: bool = False) -> list[CandidateRecord | None]:
    """The leader after each record, fed in the order given (the order recorded): None before the first scored
    one. The same decisions, in the same order, as the run made when it wrote best.yaml."""
    running = RunningBest(by, guarded=guard)
    out: list[CandidateRecord | None] = []
    for record in records:
        running.offer(record)
        out.append(running.best)
    return out


def leader(records: list[CandidateRecord], by: str = "weighted", guard: bool = False) -> CandidateRecord | None:
    """The best so far: the candidate the run's best.yaml holds while it searches."""
    order = leaders(records, by, guard)
    return order[-1] if order else None


def best_so_far(records: list[CandidateRecord], by: str = "weighted", guard: bool = False) -> list[float | None]:
    """The leader's score after each record, in the order given: the run's progress curve."""
    return [None if best is None else score_by(best, by) for best in leaders(records, by, guard)]


def best_by_generation(records: list[CandidateRecord], by: str = "weighted", guard: bool = False) -> list[float]:
    """The leader's score when each generation's last record was recorded, from the first generation that has a
    scored candidate."""
    ends: dict[int, float] = {}
    for record, best in zip(records, leaders(records, by, guard)):
        if best is not None:
            ends[record.generation] = score_by(best, by)
    return [ends[g] for g in sorted(ends)]


def chosen(
    records: list[CandidateRecord], by: str = "weighted", guard: bool = False, final_index: int | None = None
) -> CandidateRecord | None:
    """The merge a run stands for: once it has ended, the one its final check chose (`final_index`, as
    best_heldout.json names it); before, the leader."""
    if final_index is not None:
        for record in records:
            if record.index == final_index:
                return record
    return leader(records, by, guard)


def input_label(ref: str) -> str:
    """How every view names a parent (an input model)."""
    return f"{model_label(ref)} (input)"


def baseline_label(name: str) -> str:
    """How every view names a plain merge (a baseline)."""
    return f"{name} (baseline)"


def references(inputs: dict[str, dict], baselines: dict[str, dict]) -> dict[str, dict]:
    """The parents and the plain merges that were scored, by their labels: what the chosen merge is held against."""
    out = {input_label(ref): entry for ref, entry in inputs.items()}
    out.update({baseline_label(name): entry for name, entry in baselines.items() if "error" not in entry})
    return out
