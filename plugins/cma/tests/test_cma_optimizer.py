"""CMA-ES as a mergekit-evo optimizer: better than random, resumable, bounded, and strict about its options."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from mergekit_evo import UserError
from mergekit_evo.testing import (
    Evolution,
    RandomSearch,
    RunStore,
    asks_after_resume,
    distance_objective,
    final_best,
    interrupted_copy,
    parse_config,
    two_skill_config,
)
from mergekit_evo_cma import CMAES

SEEDS = range(5)


def test_cma_beats_random_search_at_the_same_budget_on_every_seed():
    cma = [final_best(CMAES, dim=8, evaluations=160, seed=s) for s in SEEDS]
    rand = [final_best(RandomSearch, dim=8, evaluations=160, seed=s) for s in SEEDS]
    assert all(c > r for c, r in zip(cma, rand)), (cma, rand)
    assert np.mean(cma) > np.mean(rand) + 0.1  # random ends near -0.2, CMA-ES near -0.01


def test_a_resumed_run_s_replay_proposes_exactly_the_uninterrupted_candidates():
    def make():
        return CMAES(dim=6, n_objectives=1, seed=3, population=6, options={}, x0=np.full(6, 0.5))

    straight, resumed = asks_after_resume(make, distance_objective(6, 3), generations=8, resume_at=3)
    assert len(resumed) == 5
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_cma_leaves_numpy_global_random_state_alone():
    np.random.seed(7)
    expected = np.random.random(3)
    np.random.seed(7)
    optimizer = CMAES(dim=4, n_objectives=1, seed=0, population=4, options={}, x0=np.full(4, 0.5))
    xs = optimizer.ask()
    optimizer.tell(xs, np.ones((len(xs), 1)))
    np.testing.assert_array_equal(np.random.random(3), expected)


def test_the_first_generation_is_centred_on_the_initial_point_and_inside_the_bounds():
    x0 = np.array([0.2, 0.8, 0.5, 0.0])
    optimizer = CMAES(dim=4, n_objectives=1, seed=0, population=64, options={"sigma0": 0.05}, x0=x0)
    xs = optimizer.ask()
    assert xs.shape == (64, 4)
    assert (xs >= 0).all() and (xs <= 1).all()
    assert np.abs(xs.mean(axis=0) - x0).max() < 0.05


def test_failed_candidates_rank_last():
    optimizer = CMAES(dim=3, n_objectives=1, seed=0, population=4, options={}, x0=np.full(3, 0.5))
    xs = optimizer.ask()
    optimizer.tell(xs, np.array([[np.nan], [0.2], [np.nan], [0.9]]))  # must not raise or poison the mean
    assert np.isfinite(optimizer.es.mean).all()


def test_ipop_restarts_with_twice_the_population_once_cma_converges():
    optimizer = CMAES(dim=3, n_objectives=1, seed=0, population=4, options={}, x0=np.full(3, 0.5))
    sizes = []
    for _ in range(30):  # a flat objective makes CMA-ES stop (tolflatfitness); IPOP restarts it wider
        xs = optimizer.ask()
        sizes.append(len(xs))
        optimizer.tell(xs, np.zeros((len(xs), 1)))
    assert optimizer.restarts >= 1
    assert max(sizes) >= 8 and sizes[0] == 4


def test_restarts_off_keeps_the_population():
    optimizer = CMAES(dim=3, n_objectives=1, seed=0, population=4, options={"restarts": "off"}, x0=np.full(3, 0.5))
    for _ in range(10):
        xs = optimizer.ask()
        assert len(xs) == 4
        optimizer.tell(xs, np.zeros((len(xs), 1)))
    assert optimizer.restarts == 0


def test_large_genomes_use_sep_cma_unless_told_otherwise():
    assert (
        CMAES(dim=150, n_objectives=1, seed=0, population=8, options={}, x0=np.full(150, 0.5)).es.opts["CMA_diagonal"]
        is True
    )
    assert (
        CMAES(dim=10, n_objectives=1, seed=0, population=8, options={}, x0=np.full(10, 0.5)).es.opts["CMA_diagonal"]
        is False
    )
    assert (
        CMAES(dim=10, n_objectives=1, seed=0, population=8, options={"diagonal": True}, x0=np.full(10, 0.5)).es.opts[
            "CMA_diagonal"
        ]
        is True
    )


def test_grid_genes_keep_a_step_of_at_least_a_third_of_a_cell():
    optimizer = CMAES(
        dim=2, n_objectives=1, seed=0, population=4, options={}, x0=np.full(2, 0.5), steps=np.array([0.1, 0.0])
    )
    np.testing.assert_allclose(optimizer.es.opts["minstd"], [0.1 / 3, 0.0])


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"sigma": 0.2}, ["optimizer.options.sigma", "sigma0"]),
        ({"cma_options": {"tolfunn": 1e-3}}, ["cma_options.tolfunn", "tolfun"]),
        ({"cma_options": {"popsize": 10}}, ["cma_options.popsize", "population"]),
        ({"restarts": "bipop"}, ["optimizer.options.restarts"]),
    ],
)
def test_bad_options_are_refused_naming_the_option(options, words):
    with pytest.raises(UserError) as e:
        CMAES.check_options(options, 1)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert "\n" not in str(e.value)


def _config(world, **changes):
    data = two_skill_config(world, max_evaluations=12, optimizer="cma", population=4)
    data["baselines"] = []  # these tests judge the search; plain merges at the end would only cost time
    data.update(changes)
    return parse_config(data, world)


def test_a_killed_cma_run_resumes_to_the_same_candidates(tiny_world, tmp_path):
    original = Evolution.start(_config(tiny_world), tmp_path / "original", log=lambda _: None).run(progress=False)
    copy = interrupted_copy(original.run_dir, tmp_path / "killed", keep=6)  # mid-generation 1
    kept = RunStore(copy).records()
    resumed = Evolution.resume(copy, log=lambda _: None).run(progress=False)
    assert [r.genome for r in resumed.records] == [r.genome for r in original.records]
    assert [r.fitness for r in resumed.records] == [r.fitness for r in original.records]
    assert resumed.records[:6] == kept  # the six recorded candidates were reused, not scored again
    assert resumed.best.merge_yaml == original.best.merge_yaml


def test_grid_and_fixed_genes_reach_the_recipe(tiny_world, tmp_path):
    genome = {"parameters": {"weight": {"min": 0.0, "max": 1.0, "step": 0.1}, "normalize": False}, "layer_groups": 2}
    cfg = _config(tiny_world, genome=genome, budget={"max_evaluations": 4})
    result = Evolution.start(cfg, tmp_path / "run", log=lambda _: None).run(progress=False)
    for record in result.records:
        assert all(abs(v * 10 - round(v * 10)) < 1e-9 for v in record.genes.values()), record.genes
        assert yaml.safe_load(record.merge_yaml)["parameters"] == {"normalize": False}
