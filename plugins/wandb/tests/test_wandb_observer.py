"""The wandb observer in a real run, in W&B's offline mode, read back from W&B's own transaction log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mergekit_evo.testing import Evolution, RunStore, parse_config, two_skill_config

pytestmark = pytest.mark.slow


def wandb_records(folder: Path) -> list[dict]:
    """Every record of the offline W&B run(s) under `folder`, as `wandb leet inspect --json` prints them."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    records = []
    for run in sorted(folder.glob("wandb/offline-run-*")):
        out = subprocess.run([str(wandb_cli), "leet", "inspect", "--json", str(run)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        records += [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return records


@pytest.fixture(scope="module")
def logged(micro_world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("wandb")
    data = two_skill_config(micro_world, 6, population=3)
    data["baselines"] = []
    data["observers"] = [{"name": "wandb", "options": {"mode": "offline", "dir": str(folder), "project": "tests"}}]
    lines: list[str] = []
    Evolution.start(parse_config(data, micro_world), folder / "run", log=lines.append).run(progress=False)
    return folder, lines


def test_every_candidate_and_generation_reaches_the_wandb_run(logged):
    folder, lines = logged
    assert not [line for line in lines if line.startswith("observer")]  # nothing failed
    records = RunStore(folder / "run").records()
    logged_records = wandb_records(folder)
    history = [r["history"]["item"] for r in logged_records if r["type"] == "history"]
    candidates = {h["candidate"]: h for h in history if "candidate" in h}
    assert set(candidates) == {r.index for r in records}
    for r in records:
        assert candidates[r.index]["candidate/fitness"] == pytest.approx(r.fitness)
        assert candidates[r.index]["candidate/task/math_a"] == pytest.approx(r.tasks["math_a"]["estimate"])
        assert candidates[r.index]["candidate/gene/layers[0].math_a.weight"] == r.genes["layers[0].math_a.weight"]
    generations = {h["generation"]: h for h in history if "generation" in h}
    assert set(generations) == {0, 1}
    for g, h in generations.items():
        assert h["generation/best"] == pytest.approx(max(r.fitness for r in records if r.generation == g))
    assert generations[1]["generation/best_so_far"] == pytest.approx(max(r.fitness for r in records))


def test_the_end_puts_the_chosen_merge_in_the_summary_and_the_results_in_an_artifact(logged):
    folder, _ = logged
    logged_records = wandb_records(folder)
    summary: dict = {}
    for r in logged_records:
        if r["type"] == "summary":
            summary.update(r["summary"].get("update", {}))
    chosen = json.loads((folder / "run" / "best_heldout.json").read_text())
    assert summary["best/index"] == chosen["index"]
    assert summary["heldout/math_a"] == pytest.approx(chosen["heldout"]["math_a"])
    (artifact,) = [r["artifact"] for r in logged_records if r["type"] == "artifact"]
    files = {Path(entry["path"]).name for entry in artifact["manifest"]["contents"]}
    assert {"best.yaml", "report.md", "report.html", "config.yaml"} <= files
    (run,) = [r["run"] for r in logged_records if r["type"] == "run"]
    assert json.loads(json.dumps(run["config"]["update"]["merge_method"])) == "task_arithmetic"
    assert [r["exit"]["exit_code"] for r in logged_records if r["type"] == "exit"] == [0]
    assert not list((folder / "run").glob("wandb*"))  # W&B kept its files out of the run directory
