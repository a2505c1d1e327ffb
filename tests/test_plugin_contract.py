"""What the run checks of every plugin: options strict by default, an optimizer's asks (shape, finite, in the unit
cube) and an estimator's choices and estimates, each refused in one line naming the plugin, before anything is
scored where it can be; and `mergekit-evo plugins NAME`, which shows a plugin's options."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from pydantic import BaseModel, Field

from helpers import cli_here, registered
from mergekit_evo import Estimator, Optimizer, UserError, hookimpl, parse_plugin_options
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.plugin.errors import RunFailure
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.store.runs import RunStore


class Lenient(BaseModel):
    """Options written without `extra="forbid"`, as the README's first plugin might."""

    step: float = Field(0.1, description="how far to step")


def test_options_are_strict_unless_a_plugin_asks_otherwise():
    with pytest.raises(UserError, match=r"^optimizer.options.stpe: unknown option; valid options: step$"):
        parse_plugin_options(Lenient, {"stpe": 0.2}, "optimizer.options")
    assert parse_plugin_options(Lenient, {"step": 0.2}, "optimizer.options").step == 0.2

    class Open(Lenient, extra="allow"):
        pass

    assert parse_plugin_options(Open, {"anything": 1}, "optimizer.options").model_extra == {"anything": 1}


class Asks(Optimizer):
    """Asks what its `what` option says: a wrong shape, a NaN or a gene past the cube."""

    class Options(BaseModel):
        what: str

    def ask(self):
        if self.options.what == "shape":
            return np.full((self.population, self.dim + 1), 0.5)
        if self.options.what == "nan":
            return np.full((self.population, self.dim), np.nan)
        return np.full((self.population, self.dim), 1.5)

    def tell(self, xs, fitness):
        pass


class Chooses(Estimator):
    """Chooses or estimates wrongly, as its `what` option says."""

    class Options(BaseModel):
        what: str

    def select(self, task, n_items):
        return [0, n_items] if self.options.what == "range" else [0, 0] if self.options.what == "repeat" else [0, 1]

    def estimate(self, task, indices, scores):
        return float("nan")


class BrokenPlugin:
    @hookimpl
    def register_optimizers(self, register):
        register("asks-test", Asks)

    @hookimpl
    def register_estimators(self, register):
        register("chooses-test", Chooses)


@pytest.fixture
def broken():
    with registered(BrokenPlugin(), "broken-contract-test"):
        yield


def _config(world, optimizer=None, estimator=None):
    data = two_skill_config(world, max_evaluations=4, population=2)
    if optimizer:
        data["optimizer"] = {"name": "asks-test", "population": 2, "options": {"what": optimizer}}
    if estimator:
        data["estimator"] = {"name": "chooses-test", "options": {"what": estimator}}
    return data


@pytest.mark.parametrize(
    ("what", "words"),
    [
        ("shape", r"optimizer 'asks-test': ask\(\) returned an array of shape \(2, 5\); .*\(population, 4\)"),
        ("nan", r"optimizer 'asks-test': ask\(\) returned a non-finite gene"),
        ("past", r"optimizer 'asks-test': ask\(\) returned genes outside \[0, 1\] \(from 1.5 to 1.5\)"),
    ],
)
def test_an_optimizer_s_bad_ask_is_refused_naming_it_before_anything_is_scored(
    micro_world, tmp_path, broken, what, words
):
    config = parse_config(_config(micro_world, optimizer=what), micro_world)
    with pytest.raises(RunFailure, match=words):
        Evolution.start(config, tmp_path / "run", log=lambda _: None).run(progress=False)
    store = RunStore(tmp_path / "run")
    assert not (store.path / RunStore.INPUTS).exists() and not store.candidates_path.exists()


@pytest.mark.parametrize(
    ("what", "words"),
    [
        ("range", r"estimator 'chooses-test': select\('math_a', \d+\) returned 2 indices, each must be distinct"),
        ("repeat", r"estimator 'chooses-test': select\('math_a', \d+\) returned 2 indices"),
        ("fine", r"estimator 'chooses-test': estimate\(\) returned nan for task 'math_a'; it must be a finite number"),
    ],
)
def test_an_estimator_s_bad_choice_or_estimate_is_refused_naming_it(micro_world, tmp_path, broken, what, words):
    config = parse_config(_config(micro_world, estimator=what), micro_world)
    with pytest.raises(RunFailure, match=words):
        Evolution.start(config, tmp_path / "run", log=lambda _: None).run(progress=False)


def test_a_broken_plugin_is_one_line_and_exit_status_1_on_the_command_line(micro_world, tmp_path, broken):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(_config(micro_world, optimizer="shape")))
    done = cli_here("run", str(tmp_path / "run.yaml"), "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "asks-test" in lines[0] and "Traceback" not in done.stderr


def test_plugins_name_shows_a_plugin_s_options_with_their_defaults_and_meaning():
    shown = cli_here("plugins", "subsample")
    assert shown.returncode == 0
    assert shown.stdout.startswith("subsample: estimator from mergekit-evo (built-in)")
    assert "    k (int, default" in shown.stdout
    assert "options: none" in cli_here("plugins", "random").stdout
    missing = cli_here("plugins", "subsampel")
    assert missing.returncode == 2 and "did you mean subsample" in missing.stderr
