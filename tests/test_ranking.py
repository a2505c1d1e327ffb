"""One ranking: best.yaml, the best-so-far curves, the report, the figures, the dashboard, `mergekit-evo best` and
every observer name the same leader, by the rule in `ranking`, also when the audit refuses the highest estimate."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from test_evidence import INPUTS, Alternating

from helpers import cli_here, designed_record, registered
from mergekit_evo import Estimator, Observer, hookimpl
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.rank.ranking import best_by_generation, leader, leaders, references
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.store.runs import RunStore
from mergekit_evo.testing import faked
from mergekit_evo.views.figures import best_so_far
from mergekit_evo.views.run_view import load_view


def _audited(index: int, estimate: float, full: float, generation: int = 0):
    record = designed_record(index, generation=generation, fitness=estimate)
    return dataclasses.replace(record, audit={"fitness": full, "tasks": {"t": full}, "accepted": None})


def test_a_guarded_leader_never_takes_a_contender_whose_full_score_falls_short():
    records = [
        _audited(0, 0.5, 0.5),
        _audited(1, 0.9, 0.3),  # the highest estimate, refused: its full score is below the leader's
        designed_record(2, fitness=0.8),  # below the bar of 0.9: no contender, however its estimate compares
        _audited(3, 0.95, 0.6, generation=1),
    ]
    assert [r.index if r else None for r in leaders(records, guard=True)] == [0, 0, 0, 3]
    assert [r.index if r else None for r in leaders(records, guard=False)] == [0, 1, 1, 3]
    assert best_by_generation(records, guard=True) == [0.5, 0.6]  # a leader's score is its full score
    assert leader([dataclasses.replace(records[0], status="failed", fitness=None)]) is None


def test_ties_keep_the_earlier_leader_and_a_task_rule_ranks_by_that_task():
    one, two = designed_record(0, fitness=0.7), designed_record(1, fitness=0.7)
    assert leader([one, two]).index == 0
    high_t = dataclasses.replace(two, fitness=0.1, tasks={"t": {"estimate": 0.9}})
    assert leader([one, high_t], by="t").index == 1 and leader([one, high_t]).index == 0


def test_parents_and_plain_merges_are_labelled_one_way_and_failed_merges_left_out():
    labels = references({"/models/math_a/": {"a": 1}}, {"ties": {"b": 2}, "broken": {"error": "no"}})
    assert labels == {"math_a (input)": {"a": 1}, "ties (baseline)": {"b": 2}}


class FlattersTheWeak(Estimator):
    """3 random items per candidate and a designed bias: the first candidate (the base) below anything, candidate 1
    (near the fake backend's best recipe) a little above, every later near-base candidate (even index) past everyone
    before it, and the other near-best ones below anything. So candidate 1 contends and is accepted, and each later
    near-base one contends, is audited, and is refused (the fake backend designs its quality far below candidate 1's):
    the raw maximum of the estimates is never the leader, whatever world the items come from."""

    def prepare(self, source):
        self.calls = {task: 0 for task in source.item_ids}

    def select(self, task, n_items):
        return np.sort(self.task_rng(task).choice(n_items, size=3, replace=False))

    def estimate(self, task, indices, scores):
        self.calls[task] += 1
        index = self.calls[task] - INPUTS - 1  # the candidate's index; negative for the inputs, scored first
        if index == 1:
            bias = 1.0
        elif index >= 2 and index % 2 == 0:
            bias = 10.0 * index
        else:  # the base (index 0) and the later near-best candidates: never contenders
            bias = -10.0
        return float(np.mean(scores)) + bias


class Watching(Observer):
    """At the end of each generation, what best.yaml holds and what every view and this observer say leads."""

    seen: list[dict] = []

    def on_generation_end(self, generation, records):
        view = load_view(self.run_dir)
        Watching.seen.append(
            {
                "best.yaml": (self.run_dir / RunStore.BEST).read_text(),
                "view": view.chosen.merge_yaml,
                "curve": best_so_far(view)[-1],
                "observer": self.best_so_far,
                "metrics": self.generation_metrics(generation, records)["best_so_far"],
                "raw": max(r.fitness for r in view.records if r.ok),
                "leader": leader(view.records, guard=True),
            }
        )


class DesignedPlugin:
    @hookimpl
    def register_optimizers(self, register):
        register("alternating-ranking-test", Alternating)

    @hookimpl
    def register_estimators(self, register):
        register("flatters-the-weak-test", FlattersTheWeak)

    @hookimpl
    def register_observers(self, register):
        register("watching-test", Watching)


@pytest.fixture
def refused_run(micro_world, fake_plugins, tmp_path):
    Watching.seen = []
    # the fake backend: a recipe's quality is designed (near 0.7 per weight is best), not the world's
    data = faked(two_skill_config(micro_world, max_evaluations=16, population=8, optimizer="alternating-ranking-test"))
    data["estimator"] = {"name": "flatters-the-weak-test", "audit": {"fraction": 0.0}}
    data["observers"] = ["watching-test"]
    with registered(DesignedPlugin(), "designed-ranking-test"):
        result = Evolution.start(parse_config(data, micro_world), tmp_path / "run", log=lambda _: None).run(
            progress=False
        )
    return result


def test_every_view_and_observer_agrees_with_best_yaml_when_the_audit_refuses_the_raw_maximum(refused_run):
    assert len(Watching.seen) == 2
    for seen in Watching.seen:
        lead = seen["leader"]
        assert seen["raw"] > lead.fitness + 1  # the designed case: the highest estimate is a refused flatterer
        assert lead.index == 1 and lead.audit["accepted"]
        assert seen["best.yaml"] == seen["view"] == lead.merge_yaml
        assert seen["curve"] == seen["observer"] == seen["metrics"] == lead.audit["fitness"]
    run_dir = refused_run.run_dir
    report = (run_dir / RunStore.REPORT).read_text()
    progress = re.search(r"Best weighted fitness after each generation: (.*)", report).group(1)
    assert progress == ", ".join(f"{s['curve']:.4f}" for s in Watching.seen)
    # once the run has ended: best.yaml holds the final check's choice, and every view and `best` name it
    view = load_view(run_dir)
    best_yaml = (run_dir / RunStore.BEST).read_text()
    assert view.chosen.merge_yaml == best_yaml == refused_run.best.merge_yaml
    assert f"| {refused_run.best.index} (chosen) |" in report
    shown = cli_here("best", str(run_dir))
    assert shown.returncode == 0 and shown.stdout.endswith(best_yaml.rstrip() + "\n")
