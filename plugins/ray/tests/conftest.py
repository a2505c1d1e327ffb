"""One Ray instance for every Ray test (starting one costs seconds), and the tiny world."""

from __future__ import annotations

import pytest

from mergekit_evo.testing import micro_world, offline, tiny_world  # noqa: F401  (the session fixture, shared with mergekit-evo's tests)

offline()  # before anything imports the Hugging Face libraries: tests never download


@pytest.fixture(scope="session")
def ray_instance():
    """A real local Ray instance on this machine's CPUs, as `ray.init()` starts one; the executor joins it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
