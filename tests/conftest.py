"""Shared fixtures: the tiny world is built once per machine (cached) and shared by every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_world() -> Path:
    """The default tiny world, built on first use into the cache (about 3-4 minutes on 2 cores), then reused."""
    import transformers

    from mergekit_evo.tiny_world import ensure_world

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return ensure_world()


@pytest.fixture(scope="session")
def manifest(tiny_world: Path) -> dict:
    from mergekit_evo.tiny_world import load_manifest

    return load_manifest(tiny_world)
