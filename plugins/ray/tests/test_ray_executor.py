"""The Ray executor on a real local Ray instance (2 CPUs, no GPU), shared by every test here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from mergekit_evo import hookimpl
from mergekit_evo.testing import Evolution, RunStore, get_plugin_manager, parse_config, two_skill_config

pytestmark = pytest.mark.ray
BIN = Path(sys.executable).parent


def _config(world: Path, executor: dict, **changes) -> dict:
    data = two_skill_config(world, 8, optimizer="cma", population=4)
    data.update(executor=executor, baselines=[], **changes)
    return data


def _scored(records) -> list[tuple]:
    """What must not depend on where a candidate ran: position, index, genome, mergekit seed, per-item scores."""
    return sorted((r.generation, r.member, r.index, r.genome, r.seed, r.status, r.tasks) for r in records)


def _run(data: dict, run_dir: Path, log=None):
    lines: list[str] = []
    result = Evolution.start(parse_config(data), run_dir, log=log or lines.append).run(progress=False)
    return result, lines


def test_two_workers_propose_and_score_exactly_what_the_local_executor_does(ray_instance, micro_world, tmp_path):
    local, _ = _run(_config(micro_world, {"name": "local"}), tmp_path / "local")
    two, lines = _run(_config(micro_world, {"name": "ray", "options": {"workers": 2}}), tmp_path / "two")
    assert len(local.records) == 8
    assert _scored(two.records) == _scored(
        local.records
    )  # CMA-ES: each generation's genomes depend on the last's scores
    assert {r.worker for r in two.records} == {"worker-0", "worker-1"}  # both workers took candidates
    assert {r.worker for r in local.records} == {"local"}
    assert any("2 Ray workers ready" in line for line in lines)
    assert two.best is not None and local.best is not None and two.best.index == local.best.index


@pytest.fixture()
def slow_backend(tmp_path):
    """The slowed native backend, registered in code and shipped to the workers by value."""
    import slow_task
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(slow_task)
    marks = tmp_path / "marks"
    marks.mkdir()
    slow_task.SlowNativeTask.marks = marks
    slow_task.SlowNativeTask.driver = os.getpid()

    class Plugin:
        @hookimpl
        def register_task_backends(self, register):
            register("slow-native", slow_task.SlowNativeTask)

    pm = get_plugin_manager()
    plugin = Plugin()
    pm.register(plugin, name="slow-native-test")
    yield marks
    pm.unregister(plugin)
    slow_task.SlowNativeTask.marks = None


def _kill_first_busy_worker(marks: Path, killed: list[int]) -> threading.Thread:
    """kill -9 the first worker seen mid-score (its busy file exists while it scores, so it is surely mid-candidate)."""

    def watch():
        deadline = time.time() + 300
        while time.time() < deadline:
            for mark in marks.glob("busy-*"):
                pid = int(mark.name.split("-")[1])
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(pid)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _slow_config(world: Path, max_retries: int) -> dict:
    data = two_skill_config(world, 8, optimizer="random", population=4)
    data["tasks"] = [{**data["tasks"][0], "backend": "slow-native"}]  # one task: fewer slow scores
    # one worker: the killed candidate's retry and the rest can only run on its replacement, so the test sees it
    # come back whatever the load (with two, the other worker could finish the run before the replacement warms)
    data.update(baselines=[], executor={"name": "ray", "options": {"workers": 1, "max_retries": max_retries}})
    return data


def _run_with_a_kill(world: Path, run_dir: Path, marks: Path, max_retries: int):
    """A one-worker run during which the worker is killed with -9 mid-score."""
    killed: list[int] = []
    watcher = _kill_first_busy_worker(marks, killed)
    result, lines = _run(_slow_config(world, max_retries=max_retries), run_dir)
    watcher.join(timeout=1)
    assert len(killed) == 1
    return result, lines, killed[0]


def test_a_worker_killed_mid_candidate_is_replaced_and_its_candidate_run_again(
    ray_instance, micro_world, tmp_path, slow_backend
):
    result, lines, killed = _run_with_a_kill(micro_world, tmp_path / "run", slow_backend, max_retries=1)
    died = [line for line in lines if "died while scoring candidate" in line]
    assert len(died) == 1 and "running it again (1 of 1)" in died[0], lines
    assert any(" is back (restart 1" in line for line in lines), lines
    records = RunStore(tmp_path / "run").records()
    # nothing lost, nothing recorded twice, every candidate scored
    assert sorted((r.generation, r.member) for r in records) == [(g, m) for g in range(2) for m in range(4)]
    assert sorted(r.index for r in records) == list(range(8))
    assert all(r.ok for r in records), [r.error for r in records]
    # the killed candidate was scored twice (the kill, then the retry); every other once
    calls = (slow_backend / "calls").read_text().split()
    assert len(calls) == 9 and calls.count(str(killed)) >= 1


def test_past_max_retries_the_candidate_is_recorded_as_failed_and_the_run_goes_on(
    ray_instance, micro_world, tmp_path, slow_backend
):
    result, lines, _ = _run_with_a_kill(micro_world, tmp_path / "run", slow_backend, max_retries=0)
    records = RunStore(tmp_path / "run").records()
    failed = [r for r in records if not r.ok]
    assert len(records) == 8 and len(failed) == 1
    assert failed[0].error is not None and "died 1 time(s) while scoring it" in failed[0].error
    assert failed[0].worker is not None and failed[0].worker.startswith("worker-")
    assert result.best is not None  # the others were scored and one chosen


def test_a_driver_killed_with_minus_9_resumes_and_scores_nothing_twice(ray_instance, micro_world, tmp_path):
    data = _config(micro_world, {"name": "ray", "options": {"address": "auto", "workers": 2}})
    data["budget"] = {"max_evaluations": 16}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    driver = subprocess.Popen(
        [str(BIN / "mergekit-evo"), "run", str(config), "--run-dir", str(run_dir), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    candidates = run_dir / RunStore.CANDIDATES
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None:
        if candidates.exists() and len(candidates.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    assert driver.poll() is None, driver.stderr.read().decode() if driver.stderr else ""
    driver.kill()
    driver.wait()
    before = candidates.read_text().splitlines()
    assert 3 <= len(before) < 16
    Evolution.resume(run_dir, log=lambda line: None).run(progress=False)
    after = candidates.read_text().splitlines()
    kept = [line for line in before if line.endswith("}")]  # a line the kill cut short is not a record
    assert after[: len(kept)] == kept  # what was recorded stays as it was
    records = RunStore(run_dir).records()
    assert len(records) == 16
    assert len({(r.generation, r.member) for r in records}) == 16  # no candidate scored twice
    assert len({r.index for r in records}) == 16


def test_bad_executor_options_are_refused_in_one_line(micro_world, tmp_path):
    from mergekit_evo import UserError

    for executor, words in [
        ({"name": "ray", "options": {"workers": 0}}, ["executor.options.workers"]),
        ({"name": "ray", "options": {"wrkers": 2}}, ["executor.options", "wrkers"]),
        ({"name": "ray", "options": {"max_retries": -1}}, ["executor.options.max_retries"]),
        ({"name": "rya"}, ["executor.name", "did you mean ray"]),
    ]:
        with pytest.raises(UserError) as error:
            Evolution.start(parse_config(_config(micro_world, executor)), tmp_path / "run", log=lambda line: None)
        assert all(word in str(error.value) for word in words), str(error.value)
        assert "\n" not in str(error.value) and not (tmp_path / "run").exists()
    # and from the command line: that one line, exit status 2, no traceback
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(micro_world, {"name": "ray", "options": {"workers": 0}})))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [str(BIN / "mergekit-evo"), "run", str(config), "--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "executor.options.workers" in lines[0]


def test_a_worker_that_cannot_load_the_models_stops_the_run_in_one_line(ray_instance, micro_world, tmp_path):
    import shutil

    from mergekit_evo import UserError

    broken = tmp_path / "math_a"
    shutil.copytree(micro_world / "models" / "math_a", broken)
    data = _config(micro_world, {"name": "ray", "options": {"workers": 1}})
    data["models"] = [str(broken), data["models"][1]]
    evolution = Evolution.start(parse_config(data), tmp_path / "run", log=lambda line: None)
    for weights in broken.glob("*.safetensors"):  # gone after the run's checks: as a worker on another node sees it
        weights.unlink()
    with pytest.raises(UserError, match=r"^executor: Ray worker worker-0 could not load the models: "):
        evolution.run(progress=False)
    deadline = time.time() + 60  # the failed worker is stopped, not left holding its CPU in the shared instance
    while ray_instance.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert ray_instance.available_resources().get("CPU", 0) == 2
