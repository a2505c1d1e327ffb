"""benchmarks/estimator_error.py in a reduced form: every held-out set, the CMA-ES candidates and the audit replay
are measured for every estimator, so the benchmark the README quotes keeps running."""

from __future__ import annotations

import math

import pytest

from helpers import benchmark, item_count


@pytest.fixture(scope="module")
def estimator_error():
    return benchmark("estimator_error")


def test_the_estimator_benchmark_measures_every_set_and_the_audited_runs(estimator_error, tiny_world):
    results, tables = estimator_error.run(
        anchors=[10],
        seeds=1,
        n_heldout=2,
        calibration=4,
        runs=1,
        evaluations=16,
        audit={"fraction": 0.25, "refit_error": 0.01, "refit_min": 2},
        log=lambda _: None,
        irt_options={"dim": 1},
    )
    sets = {
        ("two-skill", "like calibration"),
        ("two-skill", "per-layer [0, 2]"),
        ("two-skill", "dare_ties"),
        ("cross-skill", "like calibration"),
        ("cross-skill", "CMA-ES visited"),
        ("cross-skill", "CMA-ES last gens"),
        ("cross-skill", "CMA-ES top 10"),
        ("cross-skill", "audited run"),
        ("cross-skill", "equal-cost subsample"),
    }
    assert {(run, s) for run, s, _, _ in results} == sets
    for (run, s, n, _), f in results.items():
        assert {(run, s, n, e) for e in estimator_error.ESTIMATORS} <= set(results)
        assert 0 <= f["mae"] <= f["max"] <= 100 and f["regret"] >= 0
        assert math.isnan(f["rank"]) or -1 <= f["rank"] <= 1
    n_items = item_count(tiny_world, "math_b", "search")  # what a full scoring of a cross-skill candidate costs
    for name in estimator_error.ESTIMATORS:
        audited = results[("cross-skill", "audited run", 10, name)]
        # the anchors, plus the audits' full scorings spread over the run: more than the anchors, less than all
        assert 10 < audited["cost"] < n_items
        assert results[("cross-skill", "equal-cost subsample", 10, name)]["k"] == round(audited["cost"])
    assert "| cross-skill | CMA-ES top 10 | 10 |" in tables and "| 10 | gmp-irt |" in tables
