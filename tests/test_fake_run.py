"""The run loop on the fake merger and task backend (`mergekit_evo.testing`): no model arithmetic, no forward pass,
so the scheduler, resume, the audit and the store can be driven through many runs in seconds."""

from __future__ import annotations

import pytest

from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.store.runs import RunStore
from mergekit_evo.testing import fake_quality, faked, interrupted_copy, parse_merge_config


def _run(world, folder, **changes):
    data = faked(two_skill_config(world, 24, optimizer="random", population=4))
    data.update(changes)
    return Evolution.start(parse_config(data, world), folder, log=lambda _: None).run(progress=False)


@pytest.fixture(scope="module")
def fake_run(micro_world, fake_plugins, tmp_path_factory):
    return _run(micro_world, tmp_path_factory.mktemp("fake") / "run")


def test_the_fake_backend_scores_by_the_recipe_so_the_search_has_something_to_climb(fake_run):
    ok = [r for r in fake_run.records if r.ok]
    assert len(ok) == 24 and len({r.fitness for r in ok}) > 1
    best = max(ok, key=lambda r: r.fitness)
    worst = min(ok, key=lambda r: r.fitness)
    assert fake_quality(parse_merge_config(best.merge_yaml)) > fake_quality(parse_merge_config(worst.merge_yaml))


@pytest.mark.parametrize("keep", [1, 3, 4, 5, 11, 23])
def test_a_run_killed_after_any_record_resumes_to_exactly_the_same_records(fake_run, tmp_path, keep):
    copy = interrupted_copy(fake_run.run_dir, tmp_path / "killed", keep=keep)
    resumed = Evolution.resume(copy, log=lambda _: None).run(progress=False)
    assert [(r.index, r.genome, r.fitness) for r in resumed.records] == [
        (r.index, r.genome, r.fitness) for r in fake_run.records
    ]
    assert (copy / RunStore.BEST).read_text() == (fake_run.run_dir / RunStore.BEST).read_text()


def test_an_audited_cheap_estimate_on_the_fake_backend_resumes_with_the_same_audit(micro_world, fake_plugins, tmp_path):
    estimator = {"name": "subsample", "options": {"k": 8}, "audit": {"fraction": 0.3}}
    original = _run(micro_world, tmp_path / "run", estimator=estimator)
    audited = [r.index for r in original.records if r.audit is not None]
    assert audited  # contenders and a share of the rest
    copy = interrupted_copy(original.run_dir, tmp_path / "killed", keep=10)
    resumed = Evolution.resume(copy, log=lambda _: None).run(progress=False)
    assert [r.index for r in resumed.records if r.audit is not None] == audited
    assert resumed.best.index == original.best.index
