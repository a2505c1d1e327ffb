"""Test support for mergekit-evo and its plugins: the tiny world as a pytest fixture, and an interrupted run.

The optimizer benchmarks that plugin tests use (`final_best`, `front_quality`, `asks_after_resume`) are in
`mergekit_evo.optimizer_checks`, which needs no pytest.

A plugin's own tests use it with two lines in their conftest.py:

    from mergekit_evo.testing import offline, tiny_world  # noqa: F401  (the fixture)

    offline()  # before anything imports the Hugging Face libraries: tests never download

Importing this module changes nothing; `offline()` does, when called.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def offline() -> None:
    """Switch the Hugging Face libraries offline (unless the environment says otherwise) and quiet the tokenizers'
    fork warning: the Hugging Face libraries read these once, when first imported, so call it first."""
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


def interrupted_copy(run_dir: Path, into: Path, keep: int) -> Path:
    """A copy of a finished run as a kill after its `keep`-th candidate would have left it.

    The candidates log is cut after `keep` records and the results and the optimizer checkpoints written after
    that point are removed, exactly the state an uncatchable kill leaves behind; resuming the copy must then
    propose the same candidates as the original run did.
    """
    from mergekit_evo.runs import RunStore

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
    from mergekit_evo.demo import two_skill_config
    from mergekit_evo.genome import GenomeSpace
    from mergekit_evo.resident import ResidentMerger

    data = two_skill_config(world)
    data["merge_method"] = "ties"
    data["genome"] = {"parameters": {"weight": {"min": 0, "max": 1.2}, "density": {"min": 0.2, "max": 1}}}
    cfg = parse_config(data, world)
    space, merger = GenomeSpace(cfg), ResidentMerger(config=cfg)
    rng = np.random.default_rng(seed)
    for n in range(count):
        with merger.merged(space.to_merge_config(rng.random(space.dim)), seed=n) as loaded:
            yield f"merge {n}", loaded
