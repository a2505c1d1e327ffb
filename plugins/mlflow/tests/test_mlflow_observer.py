"""The mlflow observer in a real run, into a sqlite tracking store, read back with MLflow's own client."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from mergekit_evo.testing import Evolution, RunStore, parse_config, two_skill_config
from mergekit_evo_mlflow.observer import TAG, MlflowObserver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def logged(micro_world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    data = two_skill_config(micro_world, 6, population=3)
    data["baselines"] = []
    options = {"tracking_uri": uri, "experiment": "tests", "artifact_location": str(folder / "artifacts")}
    data["observers"] = [{"name": "mlflow", "options": options}]
    config = parse_config(data, micro_world)
    lines: list[str] = []
    Evolution.start(config, folder / "run", log=lines.append).run(progress=False)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    return folder, lines, client, run, config


def test_every_candidate_and_generation_reaches_the_mlflow_run(logged):
    folder, lines, client, run, _ = logged
    assert not [line for line in lines if line.startswith("observer")]  # nothing failed
    records = RunStore(folder / "run").records()
    fitness = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "candidate.fitness")}
    assert fitness == pytest.approx({r.index: r.fitness for r in records})
    gene = {
        m.step: m.value for m in client.get_metric_history(run.info.run_id, "candidate.gene.layers_0_.math_a.weight")
    }
    assert gene == pytest.approx({r.index: r.genes["layers[0].math_a.weight"] for r in records})
    best = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "generation.best")}
    assert best == pytest.approx({g: max(r.fitness for r in records if r.generation == g) for g in (0, 1)})
    assert run.data.params["merge_method"] == "task_arithmetic" and run.data.params["optimizer"] == "random"


def test_the_end_logs_the_chosen_merge_and_the_results_and_finishes_the_run(logged):
    folder, _, client, run, _ = logged
    chosen = json.loads((folder / "run" / "best_heldout.json").read_text())
    assert run.data.metrics["best.index"] == chosen["index"]
    assert run.data.metrics["heldout.facts_b"] == pytest.approx(chosen["heldout"]["facts_b"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"best.yaml", "report.md", "report.html"}
    assert list((folder / "artifacts").rglob("report.html"))  # in the experiment's artifact location
    assert run.info.status == "FINISHED"


def test_the_same_run_directory_goes_on_in_the_same_mlflow_run(logged):
    """What `resume` relies on: an observer built again for the run directory finds the MLflow run it tagged."""
    folder, _, client, run, config = logged
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    again = MlflowObserver(options={"tracking_uri": uri, "experiment": "tests"}, run_dir=folder / "run", config=config)
    assert again.run_id == run.info.run_id
    assert client.get_run(run.info.run_id).info.status == "RUNNING"
    again.close(finished=False)
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    assert run.data.tags[TAG] == again.tracking_id
