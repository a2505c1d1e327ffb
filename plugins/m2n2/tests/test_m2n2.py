"""M2N2 as a mergekit-evo optimizer: better than random, resumable, and competing and mating as the paper says."""

from __future__ import annotations

import numpy as np
import pytest

from mergekit_evo import UserError
from mergekit_evo.testing import (
    Evolution,
    RandomSearch,
    RunStore,
    asks_after_resume,
    coordinate_items,
    distance_objective,
    final_best,
    parse_config,
    two_skill_config,
)
from mergekit_evo_m2n2 import M2N2

SEEDS = range(5)


def _m2n2(dim=4, population=4, options=None, depths=None):
    return M2N2(
        dim=dim,
        n_objectives=1,
        seed=0,
        population=population,
        options=options or {},
        x0=np.full(dim, 0.5),
        depths=depths,
    )


def test_m2n2_beats_random_search_at_the_same_budget_on_every_seed():
    m2n2 = [final_best(M2N2, dim=8, evaluations=160, seed=s) for s in SEEDS]
    rand = [final_best(RandomSearch, dim=8, evaluations=160, seed=s) for s in SEEDS]
    assert all(m > r for m, r in zip(m2n2, rand)), (m2n2, rand)
    assert np.mean(m2n2) > np.mean(rand) + 0.1  # random ends near -0.19, M2N2 near -0.02


def test_a_resumed_run_s_replay_proposes_exactly_the_uninterrupted_candidates():
    straight, resumed = asks_after_resume(
        lambda: _m2n2(dim=6, population=6),
        distance_objective(6, 3),
        generations=8,
        resume_at=3,
        items=coordinate_items(6, 3),
    )
    assert len(resumed) == 5
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_an_item_few_members_solve_is_worth_more_so_a_specialist_survives_the_crowd():
    optimizer = _m2n2(options={"archive_size": 3})
    crowd = np.array([[1, 1, 1, 0]] * 4, dtype=float)  # four members solving the same three items
    specialist = np.array([[0, 0, 0, 1]], dtype=float)  # one solving only the item nobody else does
    items = np.vstack([crowd, specialist])
    xs = np.random.default_rng(0).random((5, 4))
    optimizer.tell(xs, items.mean(axis=1, keepdims=True), item_scores=items)
    # by raw accuracy the specialist is last; by competition it holds its whole item (1.0 against 3/4 each)
    assert len(optimizer.archive_x) == 3
    assert any(np.array_equal(row, xs[4]) for row in optimizer.archive_x)


def test_attraction_prefers_the_member_that_solves_what_the_first_parent_misses():
    optimizer = _m2n2()
    items = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0]], dtype=float)
    attraction = optimizer.attraction(0, items)
    assert attraction[0] == 0 and attraction[1] == 0  # itself, and a copy of itself, add nothing
    assert attraction[2] > attraction[3] > 0 or attraction[3] == 0
    assert np.argmax(attraction) == 2


def test_crossover_splits_at_a_depth_and_interpolates_each_side():
    optimizer = _m2n2(dim=5, population=1, options={"mutation": 0.0}, depths=np.linspace(0, 1, 5))
    optimizer.archive_x = np.array([np.zeros(5), np.ones(5)])
    optimizer.archive_items = np.array([[1.0, 0.0], [0.0, 1.0]])
    for _ in range(20):
        child = optimizer.child()
        values = sorted(set(np.round(child, 12)))
        assert len(values) <= 2  # one mixing weight below the split, its complement above
        if len(values) == 2:
            assert values[0] + values[1] == pytest.approx(1.0)


def test_failed_candidates_never_enter_the_archive():
    optimizer = _m2n2()
    xs = optimizer.ask()
    fitness = np.array([[0.5], [np.nan], [0.2], [np.nan]])
    items = np.array([[1, 0], [np.nan, np.nan], [0, 1], [np.nan, np.nan]], dtype=float)
    optimizer.tell(xs, fitness, item_scores=items)
    assert len(optimizer.archive_x) == 2


def test_options_are_checked_by_name():
    with pytest.raises(UserError, match="optimizer.options.archive: unknown option"):
        _m2n2(options={"archive": 4})


def test_a_real_run_hands_m2n2_the_items_and_searches_the_method_as_a_gene(tiny_world, tmp_path):
    data = two_skill_config(tiny_world, max_evaluations=8, optimizer="m2n2", population=4)
    data["merge_method"] = ["task_arithmetic", "ties"]
    data["genome"] = {
        "parameters": {"weight": {"min": 0.0, "max": 1.0}, "density": {"min": 0.3, "max": 1.0}},
        "filters": ["self_attn"],
    }
    data["tasks"] = data["tasks"][:1]  # math_a alone: the core's tests check several tasks side by side
    data["estimator"] = {"name": "subsample", "options": {"k": 8}}
    data["baselines"] = []
    data["selection"] = {"top_k": 1}
    evolution = Evolution.start(parse_config(data, tiny_world), tmp_path / "run", log=lambda _: None)
    assert evolution.genome.names[0] == "method"  # one gene picks the method: M2N2 does not relax choices
    evolution.run(progress=False)
    records = RunStore(tmp_path / "run").records()
    assert len(records) == 8 and all(r.ok for r in records)
    methods = {r.merge_yaml.split("\n")[0] for r in records}
    assert methods == {"merge_method: task_arithmetic", "merge_method: ties"}
    generation, _ = RunStore(tmp_path / "run").latest_checkpoint()
    archive = evolution.replayed_optimizer(records, generation).archive_items  # as a resume rebuilds it
    assert archive.shape[1] == 8  # the 8 items every candidate is scored on
    assert {tuple(row) for row in archive} <= {tuple(r.tasks["math_a"]["scores"]) for r in records}
