"""What a finished run returns: its records and, in memory, what its evidence files hold (inputs.json,
baselines.json, best_heldout.json, audit.json, pareto.json). The report renders it; the CLI and tests read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mergekit_evo.store.runs import CandidateRecord


@dataclass
class RunResult:
    run_dir: Path
    best: CandidateRecord | None
    inputs: dict[str, dict]  # input model ref -> its scores, as in inputs.json
    best_heldout: dict[str, float] | None
    records: list[CandidateRecord] = field(default_factory=list)
    pareto: list[CandidateRecord] | None = None  # multi-objective runs only
    baselines: dict[str, dict] = field(default_factory=dict)  # name -> scores (or error), as in baselines.json
    best_scores: dict | None = None  # the chosen merge on validation and held-out items, per item
    finalists: list[dict] = field(default_factory=list)  # the top-k rescored on all search items and/or validation
    comparisons: dict[str, dict[str, dict]] = field(default_factory=dict)  # other model -> task -> Comparison
    warning: str | None = None
    audit: dict | None = None  # runs with `estimator.audit`: as in audit.json


def summarize(per_item: dict[str, dict[str, list[float]]]) -> dict:
    """Per-item scores by split, and their means: {"items": per_item, "validation": {task: mean}, "heldout": ...},
    the shape of a model's entry in inputs.json, baselines.json and best_heldout.json."""
    means = {split: {task: float(np.mean(v)) for task, v in tasks.items()} for split, tasks in per_item.items()}
    return {"items": per_item, **means}
