"""Test support for mergekit-evo's plugins: everything a plugin's tests need, from one module.

A plugin's tests import from `mergekit_evo` (the public API) and from here, nothing else of the package: the
shipped plugins' tests do exactly that (a test checks it), so the core can move its modules without breaking them.
It holds:

- the tiny world as a session fixture (`tiny_world`), `offline()`, and ready-made configs on it
  (`two_skill_config`, `cross_skill_config`, `task_file`, `SKILLS`);
- runs: `evolve(config, run_dir)`, `resume(run_dir)`, `interrupted_copy` (a run as a kill would leave it), and the
  parts a test inspects (`Evolution`, `parse_config`, `RunStore`, `load_view`, `leader`, `non_dominated`);
- the optimizer checks (no pytest needed): `final_best` and `front_quality` compare an optimizer with random search
  (`RandomSearch`) at the same budget on cheap stand-ins (`distance_objective`, `coordinate_items`), and
  `asks_after_resume` proves it resumes exactly;
- pieces of the core a backend or estimator plugin compares itself with (`NativeTask`, `TaskConfig`, `Item`,
  `write_items`, `load_model`, `parse_merge_config`, `choice_logprobs`, `encode_items`, `StaticResponses`,
  `estimator_points`, `random_merges`), and the plugin registry (`registry`, `get_plugin_manager`).

A plugin's conftest.py:

    from mergekit_evo.testing import offline, tiny_world  # noqa: F401  (the fixture)

    offline()  # before anything imports the Hugging Face libraries: tests never download

Importing this module changes nothing, and loads the core's modules only as their names are first used.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mergekit_evo.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    from mergekit_evo.store.result import RunResult

# name -> the module that defines it: loaded on first use (mergekit and torch are seconds to import)
_SUPPORT = {
    "Evolution": "mergekit_evo.run.evolution",
    "RunResult": "mergekit_evo.store.result",
    "parse_config": "mergekit_evo.config",
    "TaskConfig": "mergekit_evo.config",
    "RunStore": "mergekit_evo.store.runs",
    "two_skill_config": "mergekit_evo.demo.configs",
    "cross_skill_config": "mergekit_evo.demo.configs",
    "task_file": "mergekit_evo.demo.tiny_world",
    "SKILLS": "mergekit_evo.demo.tiny_world.language",
    "load_view": "mergekit_evo.views.run_view",
    "estimator_points": "mergekit_evo.views.figures",
    "leader": "mergekit_evo.rank.ranking",
    "non_dominated": "mergekit_evo.rank.pareto",
    "registry": "mergekit_evo.plugin.manager",
    "get_plugin_manager": "mergekit_evo.plugin.manager",
    "RandomSearch": "mergekit_evo.run.optimizers",
    "final_best": "mergekit_evo.run.optimizer_checks",
    "front_quality": "mergekit_evo.run.optimizer_checks",
    "asks_after_resume": "mergekit_evo.run.optimizer_checks",
    "coordinate_items": "mergekit_evo.run.optimizer_checks",
    "distance_objective": "mergekit_evo.run.optimizer_checks",
    "maximize": "mergekit_evo.run.optimizer_checks",
    "NativeTask": "mergekit_evo.scoring.tasks",
    "Item": "mergekit_evo.scoring.items",
    "write_items": "mergekit_evo.scoring.items",
    "load_model": "mergekit_evo.merge.base",
    "parse_merge_config": "mergekit_evo.merge.base",
    "choice_logprobs": "mergekit_evo.scoring.native",
    "encode_items": "mergekit_evo.scoring.native",
    "StaticResponses": "mergekit_evo.estimate.responses",
    "RunFailure": "mergekit_evo.plugin.errors",
}


def __getattr__(name: str) -> Any:
    if name not in _SUPPORT:
        raise AttributeError(f"module 'mergekit_evo.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SUPPORT[name]), name)
    globals()[name] = value
    return value


def evolve(
    config: dict, run_dir: Path, world: Path | None = None, log: Callable[[str], None] | None = None
) -> RunResult:
    """A whole run of `config` (a mapping, as a YAML file would hold; relative paths against `world`) into
    `run_dir`, quietly unless `log` is given: what `mergekit-evo run` does."""
    from mergekit_evo.config import parse_config
    from mergekit_evo.run.evolution import Evolution

    evolution = Evolution.start(parse_config(config, Path(world or ".")), Path(run_dir), log=log or (lambda _: None))
    return evolution.run(progress=False)


def resume(run_dir: Path, log: Callable[[str], None] | None = None) -> RunResult:
    """A stopped run continued to its end: what `mergekit-evo resume` does."""
    from mergekit_evo.run.evolution import Evolution

    return Evolution.resume(Path(run_dir), log=log or (lambda _: None)).run(progress=False)


def offline() -> None:
    """Switch the Hugging Face libraries offline (unless the environment says otherwise) and quiet the tokenizers'
    fork warning: the Hugging Face libraries read these once, when first imported, so call it first."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_world() -> Path:
    """The default tiny world, built on first use into the cache (about 3-4 minutes on 2 cores), then reused."""
    from mergekit_evo.cli.common import quiet_libraries
    from mergekit_evo.demo.tiny_world import ensure_world

    quiet_libraries()
    return ensure_world()


MICRO = {  # the micro world's settings (a WorldSpec's): built in seconds
    "hidden": 32,
    "layers": 2,
    "base_steps": 30,
    "specialist_steps": 20,
    "language_steps": 20,
    "items_per_skill": 32,
    "math_search_items": 48,
    "math_test_items": 32,
    "batch_size": 16,
}


@pytest.fixture(scope="session")
def micro_world() -> Path:
    """The micro world: the tiny world's files, skills and item format, with 2-layer, 32-wide models trained for
    seconds (about 15 s to build on 2 cores, then cached). For tests of plumbing (configs, run folders, resume,
    views), where what the models know does not matter; the tiny world is for tests that judge model behaviour."""
    from mergekit_evo.cli.common import quiet_libraries
    from mergekit_evo.demo.tiny_world import WorldSpec, ensure_world

    quiet_libraries()
    return ensure_world(spec=WorldSpec(**MICRO), log=lambda _: None)


def fake_quality(model: Any) -> float:
    """How good a fake-merged model is, in [0, 1]: near 1 when every weight of its recipe is 0.7, lower the further
    they are (an input model: a fixed value from its name). Smooth, so optimizers have something to climb."""
    import hashlib

    if isinstance(model, str):
        return 0.2 + 0.4 * int(hashlib.sha256(model.encode()).hexdigest()[:4], 16) / 0xFFFF
    weights = []
    for entry in model.models:
        value = (entry.parameters or {}).get("weight")
        if isinstance(value, (int, float)):
            weights.append(float(value))
        elif isinstance(value, list):  # a per-layer gradient
            weights += [float(v) for v in value]
    return float(max(0.0, 1.0 - sum(abs(w - 0.7) for w in weights) / max(len(weights), 1)))


def _fake_scores(model: Any, ids: list[str]) -> Any:
    """Item `id` right when a hash of (model, id) falls below the model's quality: deterministic, item by item."""
    import hashlib

    import numpy as np

    key = model if isinstance(model, str) else model.model_dump_json()
    quality = fake_quality(model)
    draws = [int(hashlib.sha256(f"{key}|{i}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF for i in ids]
    return np.array([1.0 if u < quality else 0.0 for u in draws])


class _FakePlugin:
    """A `fake` merger and a `fake` task backend, registered in code: a run with no model arithmetic and no
    forward pass, for tests of the run loop (scheduling, resume, audit, the store) that need seconds, not minutes."""

    @staticmethod
    @functools.cache
    def classes() -> tuple[type, type]:
        import contextlib

        from mergekit_evo.merge.base import LoadedModel, Merger
        from mergekit_evo.scoring.tasks import NativeTask

        class FakeMerger(Merger):
            """No merge: the recipe itself is the model a `fake` task scores."""

            @contextlib.contextmanager
            def merged(self, merge_config, seed=None):
                yield LoadedModel(model=merge_config, tokenizer=None)

            @contextlib.contextmanager
            def input_model(self, ref):
                yield LoadedModel(model=ref, tokenizer=None, input_ref=ref)

        class FakeTask(NativeTask):
            """The items of a native task, each scored by `fake_quality` and a hash: no forward pass."""

            def score(self, model, indices):
                return _fake_scores(model.model, [self.items[i].id for i in indices])

            def score_heldout(self, model):
                return None if not self.test_items else _fake_scores(model.model, [i.id for i in self.test_items])

            def score_validation(self, model):
                items = self.validation_items
                return None if not items else _fake_scores(model.model, [i.id for i in items])

        return FakeMerger, FakeTask

    @hookimpl
    def register_mergers(self, register):
        register("fake", self.classes()[0])

    @hookimpl
    def register_task_backends(self, register):
        register("fake", self.classes()[1])


@pytest.fixture(scope="session")
def fake_plugins():
    """Registers the `fake` merger and task backend for the session (`merger: {name: fake}`, `backend: fake`)."""
    from mergekit_evo.plugin.manager import get_plugin_manager

    plugin = _FakePlugin()
    get_plugin_manager().register(plugin, name="mergekit-evo-fake")
    yield
    get_plugin_manager().unregister(plugin)


def faked(config: dict) -> dict:
    """`config` with the fake merger and every task on the fake backend."""
    return {
        **config,
        "merger": {"name": "fake"},
        "tasks": [{**task, "backend": "fake"} for task in config["tasks"]],
    }


def interrupted_copy(run_dir: Path, into: Path, keep: int) -> Path:
    """A copy of a finished run as a kill after its `keep`-th candidate would have left it.

    The candidates log is cut after `keep` records and the results and the optimizer checkpoints written after
    that point are removed, exactly the state an uncatchable kill leaves behind; resuming the copy must then
    propose the same candidates as the original run did.
    """
    from mergekit_evo.store.runs import RunStore

    results = (RunStore.BEST, RunStore.BEST_HELDOUT, RunStore.REPORT, RunStore.REPORT_HTML, RunStore.PARETO)
    shutil.copytree(run_dir, into, ignore=lambda folder, names: [n for n in names if n in results])
    store = RunStore(into)
    records = store.records()
    if not 0 < keep < len(records):
        raise ValueError(f"keep must be between 1 and {len(records) - 1}")
    kept = records[:keep]
    store.candidates_path.write_text(
        "".join(line + "\n" for line in store.candidates_path.read_text().splitlines()[:keep])
    )
    # checkpoint N is written once every generation before N is complete (an optimizer that is asked ahead may have
    # records of a later generation first); a kill leaves only those, and none past the last record's generation
    members: dict[int, set[int]] = {}
    for r in records:
        members.setdefault(r.generation, set()).add(r.member)
    have = {(r.generation, r.member) for r in kept}
    complete = {g for g, ms in members.items() if all((g, m) in have for m in ms)}
    last = max(r.generation for r in kept)
    for checkpoint in (into / RunStore.CHECKPOINTS).glob("gen-*"):
        n = int(checkpoint.name.split(".")[0].split("-")[1])
        if n > last or any(g not in complete for g in range(n)):
            checkpoint.unlink()
    shutil.rmtree(into / RunStore.PARETO_DIR, ignore_errors=True)
    return into


def random_merges(world: Path, count: int = 8, seed: int = 0):
    """`count` TIES merges of the world's two specialists with random per-layer weights and densities, made in memory
    by the resident merger (mergekit's own merge methods) as a run makes them: models to compare scorers on that
    the world's build never saw. Yields (name, LoadedModel); each model is valid until the next is made."""
    import numpy as np

    from mergekit_evo.config import parse_config
    from mergekit_evo.demo.configs import two_skill_config
    from mergekit_evo.merge.resident import ResidentMerger
    from mergekit_evo.space.genome import GenomeSpace

    data = two_skill_config(world)
    data["merge_method"] = "ties"
    data["genome"] = {"parameters": {"weight": {"min": 0, "max": 1.2}, "density": {"min": 0.2, "max": 1}}}
    cfg = parse_config(data, world)
    space, merger = GenomeSpace(cfg), ResidentMerger(config=cfg)
    rng = np.random.default_rng(seed)
    for n in range(count):
        with merger.merged(space.to_merge_config(rng.random(space.dim)), seed=n) as loaded:
            yield f"merge {n}", loaded
