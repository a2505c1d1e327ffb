"""Which candidate is best: the selection rules `best_by` names ('weighted' or one task), in one place.

`best.yaml`, `mergekit-evo best --by`, the finalists and the report all rank with these, so they can never disagree
about which candidate leads. A candidate the estimator audit scored on every search item is ranked by that full
score, which is the truth the estimate stands for; the others by their estimate.
"""

from __future__ import annotations

from typing import cast

from mergekit_evo.runs import CandidateRecord


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


def best_record(records: list[CandidateRecord], by: str = "weighted") -> CandidateRecord | None:
    """The best scored candidate under the rule `by`; ties go to the earliest."""
    order = ranked(records, by)
    return order[0] if order else None
