"""One Ray instance for every Ray test (starting one costs seconds), and the tiny world."""

from __future__ import annotations

import pytest

from mergekit_evo.testing import micro_world, offline, tiny_world  # noqa: F401  (the session fixture, shared with mergekit-evo's tests)

offline()  # before anything imports the Hugging Face libraries: tests never download


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs 2 workers, `--dist loadgroup`), every Ray test goes to one worker: they
    share one Ray instance, and two at once would each start Ray's processes on the same 2 cores."""
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture(scope="session")
def ray_instance():
    """A real local Ray instance on this machine's CPUs, as `ray.init()` starts one; the executor joins it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
