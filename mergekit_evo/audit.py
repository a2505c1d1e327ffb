"""The estimator audit (`estimator.audit`): some candidates are scored on every search item as well, so a cheap
estimate is checked where the search actually goes, not only on the merges it was calibrated on.

Every decision here is a function of the records (and the seed), so a resumed run replays it exactly:
- which candidates are audited: a seeded share, drawn by candidate index, and every contender for best;
- which candidate is the running best: a contender (its estimate beats every earlier contender's) is accepted only
  when its full score is not below the best's, so a flattering estimate cannot take the lead;
- when an estimator that learns refits: the mean absolute error on the candidates audited since its last fit passes
  `refit_error`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy.stats import spearmanr

from mergekit_evo.config import AuditConfig
from mergekit_evo.ranking import estimate_by, full_by, score_by
from mergekit_evo.runs import CandidateRecord

SAMPLE = "sample"
NEW_BEST = "new best"
_STREAM = 0xA0D17  # keeps the audit's draws apart from every other use of the run's seed


def sampled(seed: int, index: int, fraction: float) -> bool:
    """Whether candidate `index` falls in the audited share: the same answer for the same seed, always."""
    return fraction > 0 and float(np.random.default_rng([seed, index, _STREAM]).random()) < fraction


def reasons(audit: AuditConfig, seed: int, index: int, estimate: float, running: RunningBest) -> list[str]:
    """Why candidate `index` (its estimate under the best-selection rule: `estimate`) is also scored on every search
    item: its index fell in the audited share, and/or it contends for best. Empty when it is not audited."""
    why = [SAMPLE] if sampled(seed, index, audit.fraction) else []
    if audit.new_best and running.contends(estimate):
        why.append(NEW_BEST)
    return why


class RunningBest:
    """The best candidate so far, fed every record once in index order.

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


def audited(records: Iterable[CandidateRecord], since: int = 0) -> list[CandidateRecord]:
    """The candidates scored fully by the audit itself (not copies of an earlier twin), from index `since` on."""
    return [r for r in records if r.ok and r.audit is not None and r.cached_from is None and r.index >= since]


def task_errors(record: CandidateRecord) -> list[float]:
    """|estimate - full score| for each task of an audited record."""
    assert record.audit is not None
    return [abs(record.tasks[t]["estimate"] - full) for t, full in record.audit["tasks"].items()]


def mean_error(records: Sequence[CandidateRecord]) -> float:
    """The mean absolute error of the estimate over audited records and their tasks (accuracy, 0-1)."""
    return float(np.mean([e for r in records for e in task_errors(r)]))


def drift(records: Sequence[CandidateRecord], since: int, threshold: float, minimum: int) -> float | None:
    """The error that calls for a refit: the mean absolute error on the candidates audited from index `since` on
    (those the current fit estimated), when there are at least `minimum` of them and it passes `threshold`."""
    recent = audited(records, since)
    if len(recent) < minimum:
        return None
    error = mean_error(recent)
    return error if error > threshold else None


def summary(records: Sequence[CandidateRecord], by: str) -> dict:
    """The audit's figures so far: how many, mean and max error (per task), and the rank agreement (Spearman)
    between estimate and full score under the best-selection rule: what the optimizer feels."""
    rows = audited(records)
    if not rows:
        return {"audited": 0}
    errors = [e for r in rows for e in task_errors(r)]
    estimate = [estimate_by(r, by) for r in rows]
    full = [score_by(r, by) for r in rows]  # audited: the full score
    rank = None
    if len(rows) >= 3 and np.ptp(estimate) > 0 and np.ptp(full) > 0:
        rank = float(spearmanr(estimate, full).statistic)
    return {
        "audited": len(rows),
        "mean_error": float(np.mean(errors)),
        "max_error": float(np.max(errors)),
        "rank_agreement": rank,
        "new_best_rejected": sum(1 for r in rows if r.audit and r.audit.get("accepted") is False),
    }


def describe(figures: dict) -> str:
    """One log line of the audit's figures, in accuracy points."""
    if not figures.get("audited"):
        return "audit: no candidate scored fully yet"
    rank = figures["rank_agreement"]
    return (
        f"audit: {figures['audited']} candidates scored on every search item; estimate error "
        f"{100 * figures['mean_error']:.1f} points mean, {100 * figures['max_error']:.1f} max; rank agreement "
        + ("-" if rank is None else f"{rank:.2f}")
        + f"; {figures['new_best_rejected']} new best(s) refused"
    )
