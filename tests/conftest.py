"""Shared fixtures: the tiny world (from mergekit_evo.testing, as plugins use it) and its manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergekit_evo.testing import tiny_world  # noqa: F401  (the session fixture)


@pytest.fixture(scope="session")
def manifest(tiny_world: Path) -> dict:  # noqa: F811
    from mergekit_evo.tiny_world import load_manifest

    return load_manifest(tiny_world)
