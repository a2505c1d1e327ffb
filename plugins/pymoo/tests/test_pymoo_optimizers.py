"""pymoo's algorithms as mergekit-evo optimizers: better than random, resumable, Pareto fronts, strict options."""

from __future__ import annotations

import json

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
    front_quality,
    interrupted_copy,
    leader,
    non_dominated,
    parse_config,
    parse_merge_config,
    registry,
    two_skill_config,
)
from mergekit_evo_pymoo.optimizer import OPTIMIZERS

SEEDS = range(5)
SINGLE = ["ga", "de", "pso", "nsga2"]
MULTI = ["nsga2", "nsga3", "moead"]


@pytest.mark.parametrize("name", SINGLE)
def test_single_objective_search_beats_random_search_at_the_same_budget(name):
    found = [final_best(OPTIMIZERS[name], dim=8, evaluations=160, seed=s) for s in SEEDS]
    rand = [final_best(RandomSearch, dim=8, evaluations=160, seed=s) for s in SEEDS]
    assert all(f > r for f, r in zip(found, rand)), (found, rand)
    assert np.mean(found) > np.mean(rand) + 0.1  # random ends near -0.19, these near -0.03


@pytest.mark.parametrize("name", MULTI)
def test_multi_objective_search_covers_more_of_the_front_than_random_search(name):
    found = [front_quality(OPTIMIZERS[name], dim=6, evaluations=320, seed=s) for s in SEEDS]
    rand = [front_quality(RandomSearch, dim=6, evaluations=320, seed=s) for s in SEEDS]
    assert all(f > r for f, r in zip(found, rand)), (found, rand)
    assert np.mean(found) > np.mean(rand) + 0.15  # random covers about 0.4 of the box, these about 0.7


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_resumed_run_s_replay_proposes_exactly_the_uninterrupted_candidates(name):
    n_objectives = 2 if OPTIMIZERS[name].multi_objective else 1

    def make():
        return OPTIMIZERS[name](dim=5, n_objectives=n_objectives, seed=3, population=8, options={}, x0=np.full(5, 0.5))

    straight, resumed = asks_after_resume(make, distance_objective(5, 3, n_objectives), generations=7, resume_at=3)
    assert len(resumed) == 4
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_the_first_generation_holds_the_initial_point_and_stays_in_bounds():
    x0 = np.array([0.1, 0.9, 0.3])
    for name in ("ga", "de", "pso", "nsga2"):
        xs = OPTIMIZERS[name](dim=3, n_objectives=1, seed=0, population=10, options={}, x0=x0).ask()
        assert xs.shape == (10, 3)
        assert (xs >= 0).all() and (xs <= 1).all()
        assert any(np.allclose(x, x0) for x in xs), name


def test_failed_candidates_do_not_break_the_search():
    optimizer = OPTIMIZERS["nsga2"](dim=3, n_objectives=2, seed=0, population=4, options={}, x0=np.full(3, 0.5))
    xs = optimizer.ask()
    optimizer.tell(xs, np.array([[np.nan, np.nan], [0.2, 0.1], [np.nan, np.nan], [0.9, 0.3]]))
    assert np.isfinite(optimizer.ask()).all()


def test_pymoo_options_reach_the_algorithm():
    ga = OPTIMIZERS["ga"](
        dim=4,
        n_objectives=1,
        seed=0,
        population=6,
        options={"crossover": {"name": "sbx", "eta": 3, "prob": 0.7}, "mutation": "gauss"},
        x0=np.full(4, 0.5),
    )
    assert type(ga.algo.mating.crossover).__name__ == "SBX"
    assert float(ga.algo.mating.crossover.eta.value) == 3
    assert type(ga.algo.mating.mutation).__name__ == "GaussianMutation"
    de = OPTIMIZERS["de"](
        dim=4, n_objectives=1, seed=0, population=6, options={"variant": "DE/rand/1/exp", "CR": 0.9}, x0=np.full(4, 0.5)
    )
    assert de.algo is not None
    nsga3 = OPTIMIZERS["nsga3"](
        dim=4,
        n_objectives=3,
        seed=0,
        population=12,
        options={"ref_dirs": {"method": "das-dennis", "n_partitions": 3}},
        x0=np.full(4, 0.5),
    )
    assert nsga3.algo.ref_dirs.shape == (10, 3)  # C(3 + 2, 2) directions for three objectives


def test_moead_has_one_individual_per_reference_direction():
    optimizer = OPTIMIZERS["moead"](dim=4, n_objectives=2, seed=0, population=10, options={}, x0=np.full(4, 0.5))
    assert len(optimizer.algo.ref_dirs) == 10
    xs = optimizer.ask()
    assert len(xs) == 10


@pytest.mark.parametrize(
    ("name", "options", "n_objectives", "words"),
    [
        ("ga", {"pop": 10}, 1, ["optimizer.options.pop", "GA takes no such option", "eliminate_duplicates"]),
        ("nsga2", {"crossover": {"name": "sbxx"}}, 2, ["optimizer.options.crossover.name", "sbx"]),
        ("nsga2", {"crossover": {"name": "sbx", "etaa": 3}}, 2, ["crossover.etaa", "eta"]),
        ("de", {"crossover": "ux"}, 1, ["optimizer.options.crossover", "variant"]),
        ("pso", {"w": 0.5, "c3": 1}, 1, ["optimizer.options.c3", "c1", "c2"]),
        ("nsga3", {}, 1, ["optimizer.name", "several objectives"]),
        ("moead", {"ref_dirs": 12}, 2, ["optimizer.options.ref_dirs", "n_partitions"]),
        ("nsga2", {"ref_dirs": {"n_partitions": 4}}, 2, ["optimizer.options.ref_dirs", "NSGA2 takes no such option"]),
    ],
)
def test_an_option_pymoo_does_not_take_is_refused_naming_the_valid_ones(name, options, n_objectives, words):
    with pytest.raises(UserError) as e:
        OPTIMIZERS[name].check_options(options, n_objectives)
    message = str(e.value)
    assert all(w in message for w in words), message
    assert "\n" not in message


def test_every_algorithm_is_registered_under_its_short_name():
    reg = registry()
    for name in OPTIMIZERS:
        assert reg.factories["optimizers"][name] is OPTIMIZERS[name]
        assert reg.providers["optimizers"][name] == "mergekit-evo-pymoo"


def test_an_unknown_optimizer_name_lists_the_valid_choices(tiny_world, tmp_path):
    cfg = parse_config({**two_skill_config(tiny_world), "optimizer": {"name": "nsga"}}, tiny_world)
    with pytest.raises(UserError) as e:
        Evolution.start(cfg, tmp_path / "run", log=lambda _: None)
    message = str(e.value)
    assert message.startswith("optimizer.name: no optimizer named 'nsga'")
    assert all(name in message for name in ("nsga2", "nsga3", "cma", "random"))
    assert not (tmp_path / "run").exists()


def test_a_single_objective_algorithm_refuses_several_objectives(tiny_world, tmp_path):
    cfg = parse_config({**two_skill_config(tiny_world, optimizer="ga"), "objectives": "separate"}, tiny_world)
    with pytest.raises(UserError, match="objectives: ga optimizes one objective"):
        Evolution.start(cfg, tmp_path / "run", log=lambda _: None)


# ------------------------------------------------------------------------------------------ on the tiny world


@pytest.fixture(scope="module")
def pareto_run(tiny_world, tmp_path_factory):
    """NSGA-II with the tiny world's two skills as two objectives."""
    data = two_skill_config(tiny_world, max_evaluations=12, optimizer="nsga2", population=6, objectives="separate")
    run_dir = tmp_path_factory.mktemp("pareto") / "run"
    return Evolution.start(parse_config(data, tiny_world), run_dir, log=lambda _: None).run(progress=False)


def test_a_multi_objective_run_returns_a_non_dominated_front_of_runnable_recipes(pareto_run):
    records = [r for r in pareto_run.records if r.ok]
    front = pareto_run.pareto
    assert front
    points = np.array([r.objectives for r in front])
    assert non_dominated(points).all()
    assert len({tuple(f.objectives) for f in front}) == len(front)  # distinct trade-offs, each once
    for r in records:  # every candidate is dominated by one on the front, or repeats its scores
        assert any(all(a >= b for a, b in zip(f.objectives, r.objectives)) for f in front), r.objectives
    lines = [json.loads(line) for line in (pareto_run.run_dir / "pareto.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == [r.index for r in front]
    assert set(lines[0]["objectives"]) == {"math_a", "facts_b"}
    for line in lines:
        recipe = (pareto_run.run_dir / line["yaml"]).read_text()
        assert parse_merge_config(recipe).merge_method == "task_arithmetic"
    assert "Pareto front" in (pareto_run.run_dir / "report.md").read_text()


def test_best_picks_from_the_run_by_the_rule_the_user_names(pareto_run):
    records = pareto_run.records
    by_facts = leader(records, "facts_b")
    assert by_facts.tasks["facts_b"]["estimate"] == max(r.tasks["facts_b"]["estimate"] for r in records if r.ok)
    assert leader(records).fitness == max(r.fitness for r in records if r.ok)


def test_a_killed_nsga2_run_resumes_to_the_same_candidates(pareto_run, tmp_path):
    copy = interrupted_copy(pareto_run.run_dir, tmp_path / "killed", keep=8)  # mid-generation 1
    kept = RunStore(copy).records()
    resumed = Evolution.resume(copy, log=lambda _: None).run(progress=False)
    assert [r.genome for r in resumed.records] == [r.genome for r in pareto_run.records]
    assert resumed.records[:8] == kept
    assert [r.index for r in resumed.pareto] == [r.index for r in pareto_run.pareto]


def test_grid_and_fixed_genes_reach_the_recipe(tiny_world, tmp_path):
    data = two_skill_config(tiny_world, max_evaluations=4, optimizer="ga", population=4)
    data["genome"] = {"parameters": {"weight": {"min": 0.0, "max": 1.0, "step": 0.25}, "normalize": True}}
    result = Evolution.start(parse_config(data, tiny_world), tmp_path / "run", log=lambda _: None).run(progress=False)
    for record in result.records:
        assert all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in record.genes.values()), record.genes
        assert yaml.safe_load(record.merge_yaml)["parameters"] == {"normalize": True}


def test_an_option_the_plugin_sets_itself_says_what_to_use_instead():
    with pytest.raises(UserError, match="optimizer.options.pop_size: set by mergekit-evo; use optimizer.population"):
        OPTIMIZERS["nsga2"].check_options({"pop_size": 40}, 2)


def test_moead_takes_a_named_decomposition():
    optimizer = OPTIMIZERS["moead"](
        dim=3, n_objectives=2, seed=0, population=6, options={"decomposition": "pbi"}, x0=np.full(3, 0.5)
    )
    assert type(optimizer.algo.decomposition).__name__ == "PBI"


def test_the_multi_objective_demo_prints_the_front_and_best_picks_by_one_objective(tiny_world, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).parent / "mergekit-evo")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run_dir = tmp_path / "demo"
    demo = subprocess.run(
        [exe, "demo", "--multi-objective", "--max-evaluations", "4", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr
    assert "optimizer `nsga2`" in demo.stdout and "Pareto front" in demo.stdout
    front = [json.loads(line) for line in (run_dir / "pareto.jsonl").read_text().splitlines()]
    best = subprocess.run([exe, "best", str(run_dir), "--by", "facts_b"], capture_output=True, text=True, env=env)
    assert best.returncode == 0, best.stderr
    top = max(line["objectives"]["facts_b"] for line in front)
    assert f"facts_b {top:.4f}" in best.stdout.splitlines()[0]
    wrong = subprocess.run([exe, "best", str(run_dir), "--by", "fact_b"], capture_output=True, text=True, env=env)
    assert wrong.returncode == 2 and "did you mean facts_b" in wrong.stderr and "Traceback" not in wrong.stderr
