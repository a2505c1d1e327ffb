"""Which candidate is best: the selection rules `best_by` names ('weighted' or one task), in one place.

`best.yaml`, `mergekit-evo best --by`, the validation finalists and the report all rank with these, so they can
never disagree about which candidate leads.
"""

from __future__ import annotations

from typing import cast

from mergekit_evo.runs import CandidateRecord


def score_by(record: CandidateRecord, by: str = "weighted") -> float:
    """A candidate's score under a best-selection rule: its weighted fitness, or one task's estimate."""
    value = record.fitness if by == "weighted" else record.tasks[by]["estimate"]
    return cast(float, value)  # only scored records are ranked (`ranked` drops the others)


def ranked(records: list[CandidateRecord], by: str = "weighted") -> list[CandidateRecord]:
    """The scored candidates, best first under the rule `by` ('weighted' or a task name); ties go to the earliest."""
    scored = [r for r in records if r.ok and r.fitness is not None and (by == "weighted" or by in r.tasks)]
    return sorted(scored, key=lambda r: (-score_by(r, by), r.index))


def best_record(records: list[CandidateRecord], by: str = "weighted") -> CandidateRecord | None:
    """The best scored candidate under the rule `by`; ties go to the earliest."""
    order = ranked(records, by)
    return order[0] if order else None
