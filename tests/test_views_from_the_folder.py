"""Views read only the run folder: a copy of a finished run whose model folders are gone and whose estimator plugin
is not installed draws every view, the genome by its layers and models and the estimator's calibration merges
included, because the run wrote what they need (genome.json, calibration.json)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import cli_here, registered
from mergekit_evo import Estimator, hookimpl
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.store.runs import RunStore

ROOT = Path(__file__).resolve().parents[1]


class Learns(Estimator):
    """An estimator that learns: 6 items per task, and a bias fitted on two calibration merges (their full score
    less their 6-item mean), kept as its state."""

    def prepare(self, source):
        self.bias = {}
        merges = source.merges(np.array([source.start, np.full(source.dim, 0.25)]))
        for task in source.item_ids:
            picked = self.select(task, len(source.item_ids[task]))
            gaps = [m[task].mean() - m[task][picked].mean() for m in merges if m is not None]
            self.bias[task] = float(np.mean(gaps))

    def select(self, task, n_items):
        return np.sort(self.task_rng(task).choice(n_items, size=6, replace=False))

    def estimate(self, task, indices, scores):
        return float(np.mean(scores)) + self.bias[task]

    def get_state(self):
        return dict(self.bias)

    def set_state(self, state):
        self.bias = dict(state)


class LearnsPlugin:
    @hookimpl
    def register_estimators(self, register):
        register("learns-test", Learns)


@pytest.fixture(scope="module")
def moved_run(micro_world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("moved")
    models = shutil.copytree(micro_world / "models", folder / "models", ignore=lambda d, n: ["merges"])
    data = two_skill_config(micro_world, max_evaluations=8, population=4)
    data.update(models=[str(models / "math_a"), str(models / "lang_b")], base_model=str(models / "base"))
    data["estimator"] = {"name": "learns-test", "audit": {"fraction": 0.5}}
    with registered(LearnsPlugin(), "learns-test-plugin"):
        Evolution.start(parse_config(data, micro_world), folder / "run", log=lambda _: None).run(progress=False)
    shutil.rmtree(models)  # the models are gone, and so is the estimator's plugin
    return shutil.copytree(folder / "run", folder / "copy")


def test_a_moved_run_without_its_models_or_estimator_plugin_draws_every_view(moved_run, tmp_path):
    assert json.loads((moved_run / RunStore.GENOME).read_text())["genes"][0]["model"] == "math_a"
    done = cli_here("report", str(moved_run), "--out", str(tmp_path / "report.html"))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "report.html").read_text()
    start = text.index('<script type="application/json" id="state">') + len(
        '<script type="application/json" id="state">'
    )
    views = {v["id"]: v for v in json.loads(text[start : text.index("</script>", start)])["views"]}
    assert {"fitness", "tasks", "genome", "trajectories", "estimator", "recipe"} <= set(views)
    heat = views["genome"]["figure"]["data"][0]
    assert list(heat["x"]) == ["math_a", "lang_b"] and list(heat["y"]) == ["layers[0]", "layers[1]"]
    series = {trace["name"] for trace in views["estimator"]["figure"]["data"]}
    assert any(name.startswith("calibration merges") for name in series), series
    points = json.loads((moved_run / RunStore.CALIBRATION).read_text())["points"]
    assert len(points) == 2 * 2  # two calibration merges, two tasks


def test_the_views_import_no_plugin_machinery_and_open_no_model():
    for module in ("figures", "report_html", "run_view", "dashboard", "report"):
        tree = ast.parse((ROOT / "mergekit_evo" / "views" / f"{module}.py").read_text())
        imported = {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module is not None
        }
        assert not imported & {
            "mergekit_evo.plugin.manager",
            "mergekit_evo.space.genome",
            "mergekit_evo.space.dataflow",
        }, module
