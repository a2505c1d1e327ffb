"""Whole runs on the tiny world: the demo's result, failures that do not stop a run, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
import yaml

from helpers import BIN, cli, item_count, registered, tensors, write_config
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.merge.base import (
    merge_to_disk,
    parse_merge_config,
    write_candidate_model,
)
from mergekit_evo.plugin.hookspecs import hookimpl
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.scoring.tasks import NativeTask
from mergekit_evo.space.genome import GenomeSpace
from mergekit_evo.store.runs import RunStore

BUDGET = dict(max_evaluations=12, population=4)


def _demo(world, **changes):
    data = two_skill_config(world, BUDGET["max_evaluations"], population=BUDGET["population"])
    data.update(changes)
    return parse_config(data, world)


@pytest.fixture(scope="module")
def reference_run(micro_world, tmp_path_factory):
    """An uninterrupted run of the demo's config, shared by the tests that compare against it."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = Evolution.start(_demo(micro_world), run_dir, log=lambda _: None).run(progress=False)
    return result


def test_the_best_merge_beats_every_parent_on_the_combined_objective(tiny_world, tmp_path):
    world_run = Evolution.start(_demo(tiny_world), tmp_path / "run", log=lambda _: None).run(progress=False)
    best = world_run.best
    assert best is not None
    assert all(best.fitness > parent["fitness"] for parent in world_run.inputs.values())
    assert set(world_run.best_heldout) == {"math_a", "facts_b"}
    assert "held-out" in (world_run.run_dir / "report.md").read_text()


def test_every_candidate_is_recorded_with_what_reproduces_it(reference_run, micro_world):
    records = RunStore(reference_run.run_dir).records()
    assert len(records) == BUDGET["max_evaluations"]
    first = records[0]
    assert first.status == "ok"
    assert set(first.genes) == {
        "layers[0].math_a.weight",
        "layers[1].math_a.weight",
        "layers[0].lang_b.weight",
        "layers[1].lang_b.weight",
    }
    assert yaml.safe_load(first.merge_yaml)["merge_method"] == "task_arithmetic"
    assert len(first.tasks["math_a"]["scores"]) == item_count(micro_world, "math_a", "search")
    assert first.fitness == pytest.approx(np.mean([first.tasks[t]["estimate"] for t in ("math_a", "facts_b")]))
    assert (reference_run.run_dir / "best.yaml").read_text() == reference_run.best.merge_yaml
    assert {r.device for r in records} == {"cuda" if torch.cuda.is_available() else "cpu"}  # the resident's `auto`


def test_a_subsample_estimator_scores_only_its_k_items(micro_world, tmp_path):
    cfg = _demo(
        micro_world,
        estimator={"name": "subsample", "options": {"k": 10}},
        budget={"max_evaluations": 2},
        optimizer={"name": "random", "population": 2},
    )
    Evolution.start(cfg, tmp_path / "run", log=lambda _: None).run(progress=False)
    records = RunStore(tmp_path / "run").records()
    selection = json.loads((tmp_path / "run" / "selection.json").read_text())
    assert all(len(r.tasks[t]["scores"]) == 10 for r in records for t in ("math_a", "facts_b"))
    assert len(selection["math_a"]["item_ids"]) == 10


class FlakyTask(NativeTask):
    """Fails on every second merged candidate, as a broken evaluation would; scores the rest like `native`."""

    merged_calls = 0

    def score(self, model, indices):
        if model.input_ref is None:  # a merged candidate, not an input model
            FlakyTask.merged_calls += 1
            if FlakyTask.merged_calls % 2 == 0:
                raise RuntimeError("evaluation server went away")
        return super().score(model, indices)


class FlakyPlugin:
    @hookimpl
    def register_task_backends(self, register):
        register("flaky", FlakyTask)


def test_a_failing_candidate_is_recorded_as_failed_and_the_run_goes_on(micro_world, tmp_path):
    data = two_skill_config(micro_world, 6, population=3)
    data["tasks"] = data["tasks"][:1]
    data["tasks"][0]["backend"] = "flaky"
    FlakyTask.merged_calls = 0
    with registered(FlakyPlugin(), "flaky-test-plugin"):
        result = Evolution.start(parse_config(data, micro_world), tmp_path / "run", log=lambda _: None).run(
            progress=False
        )
    records = RunStore(tmp_path / "run").records()
    assert len(records) == 6
    failed = [r for r in records if r.status == "failed"]
    assert failed and len(failed) < 6
    assert all("evaluation server went away" in r.error for r in failed)
    assert result.best is not None and result.best.status == "ok"


def test_kill_9_then_resume_loses_nothing_rescores_nothing_and_matches_an_uninterrupted_run(
    micro_world, tmp_path, reference_run
):
    run_dir = tmp_path / "run"
    # no plain merges at the end: the records and best.yaml are compared, and the kill must land mid-run
    write_config(
        micro_world, tmp_path, BUDGET["max_evaluations"], BUDGET["population"], run_dir=str(run_dir), baselines=[]
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [str(BIN / "mergekit-evo"), "run", str(tmp_path / "config.yaml"), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    candidates = run_dir / "candidates.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if candidates.exists() and len(candidates.read_bytes().splitlines()) >= 5:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = candidates.read_bytes().splitlines(keepends=True)
    assert 5 <= len(before) < BUDGET["max_evaluations"], "the kill should land mid-run"

    result = cli("resume", str(run_dir), "--no-progress")
    assert result.returncode == 0, result.stderr
    after = candidates.read_bytes().splitlines(keepends=True)
    complete_before = [line for line in before if line.endswith(b"\n")]
    assert after[: len(complete_before)] == complete_before, "recorded candidates were rewritten"
    resumed = RunStore(run_dir).records()
    reference = RunStore(reference_run.run_dir).records()
    assert len(resumed) == len(reference) == BUDGET["max_evaluations"]
    assert [r.merge_yaml for r in resumed] == [r.merge_yaml for r in reference]
    assert [r.fitness for r in resumed] == [r.fitness for r in reference]
    assert (run_dir / "best.yaml").read_text() == (reference_run.run_dir / "best.yaml").read_text()


def test_resume_of_a_finished_run_scores_nothing_more(reference_run):
    before = (reference_run.run_dir / "candidates.jsonl").read_bytes()
    result = cli("resume", str(reference_run.run_dir), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert (reference_run.run_dir / "candidates.jsonl").read_bytes() == before


def test_best_writes_the_merged_model(reference_run, tmp_path):
    result = cli("best", str(reference_run.run_dir), "--write-model", str(tmp_path / "merged"))
    assert result.returncode == 0, result.stderr
    assert "merge_method: task_arithmetic" in result.stdout
    assert f"--random-seed {reference_run.best.seed}" in result.stdout
    assert (tmp_path / "merged" / "config.json").is_file()


def test_a_recipe_proposed_again_is_neither_merged_nor_scored_and_keeps_what_reproduces_the_scored_tensors(
    micro_world, tmp_path
):
    genome = {"parameters": {"weight": {"min": 0, "max": 1, "step": 0.5}, "density": 0.5}}  # 9 recipes in all
    evolution = Evolution.start(
        _demo(micro_world, merge_method="dare_ties", genome=genome, budget={"max_evaluations": 16}),
        tmp_path / "run",
        log=lambda _: None,
    )
    merges = []
    merged = evolution.merger.merged
    evolution.merger.merged = lambda config, seed=None: merges.append(seed) or merged(config, seed)
    result = evolution.run(progress=False)
    records = result.records
    first = {}
    for r in records:
        twin = first.setdefault(r.merge_yaml, r)
        if twin is not r:
            assert r.cached_from == twin.index and r.tasks == twin.tasks and r.fitness == twin.fitness
            assert (r.seed, r.device) == (twin.seed, twin.device) and r.seconds == 0
    assert len(first) < len(records)  # the grid forced repeats
    assert sorted(merges[: len(first)]) == sorted(r.seed for r in first.values())  # one merge per distinct recipe
    assert len(merges) == len(first) + 1 + len(result.baselines)  # the best again for its held-out scores; baselines


def test_a_candidate_merged_on_a_missing_device_is_written_on_the_cpu_and_says_so(micro_world, tmp_path):
    cfg = _demo(
        micro_world,
        merge_method="dare_ties",
        genome={"parameters": {"weight": {"min": 0, "max": 1}, "density": {"min": 0.2, "max": 0.8}}},
    )
    merge_yaml = GenomeSpace(cfg).to_yaml(np.full(GenomeSpace(cfg).dim, 0.5))
    message = write_candidate_model(merge_yaml, 5, "cuda:7", tmp_path / "written")
    assert "on the CPU" in message and "cuda:7" in message
    on_cpu = merge_to_disk(parse_merge_config(merge_yaml), tmp_path / "cpu", seed=5, device="cpu")
    other_seed = merge_to_disk(parse_merge_config(merge_yaml), tmp_path / "other", seed=6, device="cpu")
    written, expected, unlike = tensors(tmp_path / "written"), tensors(on_cpu), tensors(other_seed)
    assert all(torch.equal(written[name], expected[name]) for name in expected)
    assert not all(torch.equal(written[name], unlike[name]) for name in expected)  # the seed was the record's


def test_plugins_lists_each_builtin_with_its_distribution():
    result = cli("plugins")
    assert result.returncode == 0, result.stderr
    for name in ("random", "full", "subsample", "native", "disk"):
        assert name in result.stdout
    assert "mergekit-evo (built-in)" in result.stdout


def test_a_plugin_that_fails_to_load_is_reported_by_name(tmp_path):
    dist = tmp_path / "mergekit_evo_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mergekit-evo-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mergekit_evo]\nbroken = mergekit_evo_no_such_module\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [str(BIN / "mergekit-evo"), "plugins"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "failed to load plugin broken: ModuleNotFoundError" in result.stdout
    assert "random" in result.stdout
