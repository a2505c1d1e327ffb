"""The estimator audit (`estimator.audit`): some candidates are scored on every search item as well, so a cheap
estimate is checked where the search actually goes, not only on the merges it was calibrated on.

Every decision here is a function of the records (and the seed), so a resumed run replays it exactly:
- which candidates are audited: a seeded share, drawn by candidate index, and every contender for best;
- which candidate is the running best (`ranking.RunningBest`, the one rule every view uses too);
- when an estimator that learns refits: the mean absolute error on the candidates audited since its last fit passes
  `refit_error`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy.stats import spearmanr

from mergekit_evo.config import AuditConfig
from mergekit_evo.rank.ranking import RunningBest, estimate_by, score_by
from mergekit_evo.store.runs import CandidateRecord

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
