"""IRT estimators in whole runs on the tiny world: cheaper per candidate, resumable, and as good as full scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mergekit_evo.testing import Evolution, RunStore, interrupted_copy, parse_config, task_file, two_skill_config

BUDGET = 32


def _run(world, folder, estimator):
    data = two_skill_config(world, max_evaluations=BUDGET, optimizer="cma", population=8)
    data["estimator"] = estimator
    data["baselines"] = []  # these tests judge the estimator; plain merges at the end would only cost time
    return Evolution.start(parse_config(data, world), folder, log=lambda _: None).run(progress=False)


@pytest.fixture(scope="module")
def runs(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("irt-runs")
    return {
        "full": _run(tiny_world, root / "full", {"name": "full"}),
        "gmp-irt": _run(tiny_world, root / "gmp", {"name": "gmp-irt", "options": {"n": 20, "calibration": 8}}),
    }


def _items_scored(run) -> int:
    """Every item score the run computed: its candidates, and the estimator's response data."""
    per_candidate = sum(len(t["scores"]) for r in run.records if r.cached_from is None for t in r.tasks.values())
    responses = run.run_dir / "responses.jsonl"
    upfront = (
        sum(sum(len(v) for v in json.loads(line)["tasks"].values()) for line in responses.read_text().splitlines())
        if responses.exists()
        else 0
    )
    return per_candidate + upfront


def test_the_estimator_scores_inputs_and_calibration_merges_once_then_only_anchors(runs, tiny_world):
    run = runs["gmp-irt"]
    responses = (run.run_dir / "responses.jsonl").read_text().splitlines()
    assert len(responses) == 3 + 8  # math_a, lang_b, base and the calibration merges
    n_items = len(task_file(tiny_world, "math_a", "search").read_text().splitlines())
    assert all(len(json.loads(line)["tasks"]["math_a"]) == n_items for line in responses)
    saved = json.loads((run.run_dir / "estimator" / "irt.json").read_text())
    assert set(saved["tasks"]) == {"math_a", "facts_b"}
    selection = json.loads((run.run_dir / "selection.json").read_text())
    for task in ("math_a", "facts_b"):
        anchors = selection[task]["indices"]
        assert 1 <= len(anchors) <= 20
        assert all(len(r.tasks[task]["scores"]) == len(anchors) for r in run.records)


def test_gmp_irt_finds_as_good_a_merge_as_full_scoring_at_a_fraction_of_the_items(runs, tiny_world):
    full, gmp = runs["full"], runs["gmp-irt"]
    heldout = {name: np.mean(list(run.best_heldout.values())) for name, run in runs.items()}
    # not below full scoring's merge by more than the held-out measurement can tell apart: two standard errors of
    # the difference of two accuracies on these items (about 0.06 here), whichever world was built
    n = sum(len(task_file(tiny_world, task, "test").read_text().splitlines()) for task in ("math_a", "facts_b"))
    noise = 2 * np.sqrt(sum(p * (1 - p) / n for p in heldout.values()))
    assert heldout["gmp-irt"] >= heldout["full"] - noise, (heldout, noise)
    assert all(heldout[n] > max(p["fitness"] for p in runs[n].inputs.values()) for n in heldout)  # beats parents
    assert _items_scored(gmp) < 0.6 * _items_scored(full)


def test_a_killed_irt_run_resumes_without_refitting_or_rescoring(runs, tmp_path):
    original = runs["gmp-irt"]
    copy = interrupted_copy(original.run_dir, tmp_path / "killed", keep=12)
    responses = (copy / "responses.jsonl").read_bytes()
    fitted = (copy / "estimator" / "irt.json").read_bytes()
    resumed = Evolution.resume(copy, log=lambda _: None).run(progress=False)
    assert (copy / "responses.jsonl").read_bytes() == responses
    assert (copy / "estimator" / "irt.json").read_bytes() == fitted
    assert [r.genome for r in resumed.records] == [r.genome for r in original.records]
    assert [r.fitness for r in resumed.records] == [r.fitness for r in original.records]


def test_responses_of_a_killed_preparation_are_kept(tiny_world, tmp_path):
    data = two_skill_config(tiny_world, max_evaluations=2, population=2)
    data["estimator"] = {"name": "mp-irt", "options": {"n": 10, "calibration": 2}}
    run = Evolution.start(parse_config(data, tiny_world), tmp_path / "run", log=lambda _: None).run(progress=False)
    lines = (run.run_dir / "responses.jsonl").read_bytes().splitlines(keepends=True)
    # as if killed while scoring the second calibration merge, mid-write, before anything was fitted
    (run.run_dir / "responses.jsonl").write_bytes(b"".join(lines[:4]) + lines[4][:50])
    (run.run_dir / "estimator" / "irt.json").unlink()
    store = RunStore(run.run_dir)
    store.candidates_path.write_text("")
    for checkpoint in (run.run_dir / "checkpoints").glob("gen-*"):
        checkpoint.unlink()
    (run.run_dir / "selection.json").unlink()
    logged = []
    Evolution.resume(run.run_dir, log=logged.append).run(progress=False)
    assert any("scoring 1 calibration merges" in line for line in logged), logged
    assert not any("input models" in line for line in logged)
    assert (run.run_dir / "responses.jsonl").read_bytes().splitlines(keepends=True)[:4] == lines[:4]


def test_an_audited_irt_run_refits_on_drift_keeps_its_anchors_and_a_resume_refits_alike(tiny_world, tmp_path):
    estimator = {
        "name": "gmp-irt",
        "options": {"n": 10, "calibration": 8},
        "audit": {"fraction": 0.25, "refit_error": 0.01, "refit_min": 2},
    }
    original = _run(tiny_world, tmp_path / "run", estimator)
    refits = original.audit["refits"]
    assert refits, "a 1-point threshold on 10 anchors should be passed"
    store = RunStore(original.run_dir)
    generation, state = store.latest_checkpoint()
    initial = json.loads((original.run_dir / "estimator" / "irt.json").read_text())["tasks"]
    for task, fitted in state["estimator"].items():
        assert fitted["anchors"] == initial[task]["anchors"]  # the items every candidate is scored on stay
        assert fitted["params"] != initial[task]["params"]  # and the model of them was learned again
    copy = interrupted_copy(original.run_dir, tmp_path / "killed", keep=13)
    resumed = Evolution.resume(copy, log=lambda _: None).run(progress=False)
    assert [(r.fitness, r.tasks, r.audit) for r in resumed.records] == [
        (r.fitness, r.tasks, r.audit) for r in original.records
    ]
    assert resumed.audit == original.audit


def test_the_report_plots_the_fitted_estimator_on_its_calibration_merges(runs):
    """report.html's estimator view: each calibration merge's estimate from its anchors against its full score."""
    from mergekit_evo.testing import estimator_points, load_view

    run = runs["gmp-irt"]
    points = estimator_points(load_view(run.run_dir))["calibration merges (fit on them)"]
    merges = [json.loads(line) for line in (run.run_dir / "responses.jsonl").read_text().splitlines()]
    full = [
        float(np.mean(m["tasks"][t])) for m in merges if m["key"].startswith("merge:") for t in ("math_a", "facts_b")
    ]
    assert sorted(p[1] for p in points) == pytest.approx(sorted(full)) and len(points) == 8 * 2
    errors = [abs(estimate - score) for estimate, score, _ in points]
    assert 0 < max(errors) and np.mean(errors) < 0.1  # estimated from 20 anchors, not read off the full score
