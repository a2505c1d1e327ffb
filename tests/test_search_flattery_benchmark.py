"""benchmarks/search_flattery.py, which docs/tiny-world.md quotes for why the demo's search flatters its pick: on a
short cross-skill run of the micro world it reads the run without writing into it, and its arithmetic is checked on
designed cases."""

from __future__ import annotations

import pytest

from helpers import benchmark, designed_record, snapshot
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import cross_skill_config
from mergekit_evo.run.evolution import Evolution


@pytest.fixture(scope="module")
def flattery():
    return benchmark("search_flattery")


@pytest.fixture(scope="module")
def finished(micro_world, tmp_path_factory):
    """cross_skill.py's layout: runs/seed-0, a finished run of the demo's search (16 candidates in 4 generations)."""
    runs = tmp_path_factory.mktemp("cross-skill")
    data = cross_skill_config(micro_world, 16, population=4)
    result = Evolution.start(parse_config(data, micro_world), runs / "seed-0", log=lambda _: None).run(progress=False)
    return runs, result


def test_the_benchmark_reads_a_finished_run_without_writing_into_it(flattery, finished):
    runs, result = finished
    before = snapshot(runs / "seed-0")
    lines = flattery.measure(runs, [0], log=lambda _: None)
    assert snapshot(runs / "seed-0") == before
    # the evolved merge's flattery is the run's own: its search estimate minus its held-out score
    drop = result.best.tasks["math_b"]["estimate"] - result.best_scores["heldout"]["math_b"]
    noise_row = next(line for line in lines if line.startswith("| 0 |"))
    assert noise_row.endswith(f"| {drop:+.3f} |")
    # both rules and the late population are measured, and their validation scores kept beside the runs
    assert sum(line.startswith("| 0 |") for line in lines) == 1 + 1 + 2
    kept = runs / "search-flattery" / "seed-0.json"
    assert kept.exists()
    again = kept.read_bytes()
    assert flattery.measure(runs, [0], log=lambda _: None) == lines
    assert kept.read_bytes() == again


def test_a_leader_is_a_candidate_better_than_every_earlier_one(flattery):
    scores = [0.3, 0.5, 0.5, 0.4, 0.7, 0.6]
    records = [designed_record(i, fitness=f) for i, f in enumerate(scores)]
    assert [r.index for r in flattery.leaders(records)] == [0, 1, 4]


def test_the_chance_that_every_seed_meets_the_target_falls_with_the_bias_and_the_seeds(flattery):
    sd = flattery.binomial_sd(0.5, 400, 256)
    assert sd == pytest.approx((0.25 / 400 + 0.25 / 256) ** 0.5)
    assert flattery.chance_all_met(flattery.TARGET, sd, 5) == pytest.approx(0.5**5)
    unbiased = flattery.chance_all_met(0.0, sd, 5)
    assert flattery.chance_all_met(0.0, sd, 1) > unbiased > flattery.chance_all_met(0.03, sd, 5)
