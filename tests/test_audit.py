"""The estimator audit: a share of candidates and every contender for best scored on all search items as well, a
flattering estimate refused the lead, and an estimator that drifts refitted, the same way after a resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

from helpers import item_count, registered
from mergekit_evo import Estimator, hookimpl
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.estimate.audit import NEW_BEST, SAMPLE, sampled
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.store.runs import RunStore
from mergekit_evo.testing import interrupted_copy

TASKS = ("math_a", "facts_b")


class DriftingEstimator(Estimator):
    """k random items plus a bias it starts with and learns on refit: a made-up estimator whose error is known.

    Its refit sets each task's bias to the audited candidates' mean gap between full score and subsample mean.
    """

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        k: int = 20
        bias: float = 0.25
        broken_refit: bool = False  # refit learns half the bias away, then raises

    def prepare(self, source):
        self.bias = {task: self.options.bias for task in source.item_ids}
        self.n_items = {task: len(ids) for task, ids in source.item_ids.items()}

    def select(self, task, n_items):
        return np.sort(self.task_rng(task).choice(n_items, size=self.options.k, replace=False))

    def estimate(self, task, indices, scores):
        return float(np.mean(scores)) + self.bias[task]

    def refit(self, audited):
        if self.options.broken_refit:
            self.bias = {task: bias / 2 for task, bias in self.bias.items()}
            raise RuntimeError("the fit diverged")
        for task, n in self.n_items.items():
            chosen = self.select(task, n)
            self.bias[task] = float(np.mean([s[task].mean() - s[task][chosen].mean() for s in audited]))
        return True

    def get_state(self):
        return dict(self.bias)

    def set_state(self, state):
        self.bias = dict(state)


class FlatteringEstimator(Estimator):
    """k random items, and every other candidate flattered past every estimate before it: a made-up estimator that
    makes contenders whose full score the audit must judge, on any world (the odd calls per task get a bias that
    grows by 10 a call, the even ones none; a task's estimates are asked once per candidate, in index order)."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        k: int = 6

    def prepare(self, source):
        self.calls = {task: 0 for task in source.item_ids}

    def select(self, task, n_items):
        return np.sort(self.task_rng(task).choice(n_items, size=self.options.k, replace=False))

    def estimate(self, task, indices, scores):
        self.calls[task] += 1
        n = self.calls[task]
        return float(np.mean(scores)) + (10.0 * n if n % 2 else 0.0)


class DriftingPlugin:
    @hookimpl
    def register_estimators(self, register):
        register("drifting-test", DriftingEstimator)
        register("flattering-test", FlatteringEstimator)


@pytest.fixture(scope="module")
def drifting():
    with registered(DriftingPlugin(), "drifting-test-plugin"):
        yield


def _run(world, folder, estimator, evaluations=24):
    data = two_skill_config(world, max_evaluations=evaluations, population=8)
    data["estimator"] = estimator
    return Evolution.start(parse_config(data, world), folder, log=lambda _: None).run(progress=False)


@pytest.fixture(scope="module")
def audited_run(tiny_world, tmp_path_factory, drifting):
    # 6 items per task, every other candidate flattered into a contender: the audit accepts the first and refuses
    # each later one whose full score is below the best's (the test replays the rule from the records)
    estimator = {"name": "flattering-test", "options": {"k": 6}, "audit": {"fraction": 0.3}}
    return _run(tiny_world, tmp_path_factory.mktemp("audit") / "run", estimator)


def test_the_audit_scores_its_share_and_every_contender_on_all_items_and_keeps_both_numbers(audited_run, tiny_world):
    records = audited_run.records
    n_items = {task: item_count(tiny_world, task, "search") for task in TASKS}
    bar = best_full = None  # the highest contender's estimate, the accepted best's full score
    refused = 0
    for r in records:  # replayed here from the rule as documented, not from the code under test
        reasons = r.audit["reason"] if r.audit else []
        assert (SAMPLE in reasons) == sampled(0, r.index, 0.3)
        contender = bar is None or r.fitness > bar
        assert (NEW_BEST in reasons) == contender, r.index
        if r.audit:
            assert {t: len(v) for t, v in r.audit["items"].items()} == n_items
            for t in TASKS:  # both numbers: the estimate from 6 items, and the accuracy on all of them
                assert len(r.tasks[t]["scores"]) == 6
                assert r.audit["tasks"][t] == pytest.approx(np.mean(r.audit["items"][t]))
            assert r.audit["fitness"] == pytest.approx(np.mean([r.audit["tasks"][t] for t in TASKS]))
        if contender:
            accepted = best_full is None or r.audit["fitness"] >= best_full
            assert r.audit["accepted"] == accepted
            bar = r.fitness
            if accepted:
                best_full = r.audit["fitness"]
            else:
                refused += 1
    assert refused >= 1, "no flattering contender: the test's estimate is not noisy enough"
    shares = sum(1 for r in records if r.audit and SAMPLE in r.audit["reason"])
    assert 0 < shares < len(records)
    figures = json.loads((audited_run.run_dir / RunStore.AUDIT).read_text())
    assert figures["audited"] == sum(1 for r in records if r.audit) and figures["new_best_rejected"] == refused
    errors = [abs(r.fitness - r.audit["fitness"]) for r in records if r.audit]
    assert figures["max_error"] >= max(errors) - 1e-12  # per task, so at least the fitness's error
    report = (audited_run.run_dir / RunStore.REPORT).read_text()
    assert f"Estimator audit: {figures['audited']} candidates" in report and "New bests refused" in report


def test_an_audited_finalist_is_not_merged_again_for_the_final_check(audited_run):
    full = json.loads((audited_run.run_dir / RunStore.FULL_SEARCH).read_text())
    by_index = {r.index: r for r in audited_run.records}
    reused = [i for i in full if by_index[int(i)].audit is not None]
    assert reused, "some finalist should have been audited"
    for i in reused:
        assert full[i] == by_index[int(i)].audit["items"]


def test_a_drifting_estimator_is_refitted_and_its_error_falls(tiny_world, tmp_path, drifting):
    estimator = {
        "name": "drifting-test",
        "options": {"k": 20, "bias": 0.25},
        "audit": {"fraction": 0.5, "refit_error": 0.1, "refit_min": 2},
    }
    result = _run(tiny_world, tmp_path / "run", estimator)
    refits = result.audit["refits"]
    assert refits and refits[0]["generation"] == 0
    assert refits[0]["error_before"] > 0.2 > 0.1 > refits[0]["error_after"]
    after = [r for r in result.records if r.generation > 0 and r.audit and r.cached_from is None]
    before = [r for r in result.records if r.generation == 0 and r.audit]
    gap = {
        name: np.mean([abs(r.tasks[t]["estimate"] - r.audit["tasks"][t]) for r in rows for t in TASKS])
        for name, rows in (("before", before), ("after", after))
    }
    assert gap["after"] < gap["before"] / 2, gap
    # a refit changes no record already written: generation 0 kept its biased estimates
    assert all(
        r.tasks[t]["estimate"] == pytest.approx(np.mean(r.tasks[t]["scores"]) + 0.25) for r in before for t in TASKS
    )


def test_a_resumed_run_makes_the_same_audit_and_refit_decisions(tiny_world, tmp_path, drifting):
    estimator = {
        "name": "drifting-test",
        "options": {"k": 5, "bias": 0.25},
        "audit": {"fraction": 0.4, "refit_error": 0.1, "refit_min": 2},
    }
    original = _run(tiny_world, tmp_path / "run", estimator)
    assert original.audit["refits"]
    copy = interrupted_copy(original.run_dir, tmp_path / "killed", keep=13)  # mid-generation 1, after a refit
    resumed = Evolution.resume(copy, log=lambda _: None).run(progress=False)

    def decisions(records):
        return [(r.merge_yaml, r.fitness, r.tasks, r.audit) for r in records]

    assert decisions(resumed.records) == decisions(original.records)
    assert resumed.audit == original.audit
    assert (copy / RunStore.BEST).read_text() == (original.run_dir / RunStore.BEST).read_text()


def test_audit_options_are_checked_and_a_full_estimate_has_nothing_to_audit(tiny_world, tmp_path):
    data = two_skill_config(tiny_world, max_evaluations=2, population=2)
    data["estimator"] = {"name": "subsample", "audit": {"fraction": 1.5}}
    with pytest.raises(UserError, match="estimator.audit.fraction"):
        parse_config(data, tiny_world)
    data["estimator"] = {"name": "full", "audit": True}
    logged: list[str] = []
    run = Evolution.start(parse_config(data, tiny_world), tmp_path / "run", log=logged.append).run(progress=False)
    assert any("nothing to audit" in line for line in logged)
    assert all(r.audit is None for r in run.records) and not (run.run_dir / RunStore.AUDIT).exists()


def test_a_refit_that_fails_keeps_the_fit_it_had_and_the_run_goes_on(tiny_world, tmp_path, drifting):
    estimator = {
        "name": "drifting-test",
        "options": {"k": 20, "bias": 0.25, "broken_refit": True},
        "audit": {"fraction": 0.5, "refit_error": 0.1, "refit_min": 2},
    }
    data = two_skill_config(tiny_world, max_evaluations=16, population=8)
    data["estimator"] = estimator
    logged: list[str] = []
    result = Evolution.start(parse_config(data, tiny_world), tmp_path / "run", log=logged.append).run(progress=False)
    assert len(result.records) == 16 and not result.audit["refits"]
    assert any("refit drifting-test failed (RuntimeError: the fit diverged)" in line for line in logged)
    for r in result.records:  # the half-learned bias was put back: every estimate still carries all of it
        for t in TASKS:
            assert r.tasks[t]["estimate"] == pytest.approx(np.mean(r.tasks[t]["scores"]) + 0.25)
