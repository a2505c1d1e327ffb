"""`mergekit-evo evolve`: a mergekit-evolve command line and config file, run unchanged on the Ray executor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mergekit_evo.testing import RunStore, parse_merge_config

pytestmark = pytest.mark.ray
BIN = Path(sys.executable).parent


def _mergekit_evolve_config(world: Path, folder: Path) -> Path:
    """A config as mergekit-evolve's users write it: genome: and lm-eval tasks with weight and metric."""
    data = {
        "genome": {
            "models": [str(world / "models" / "math_a"), str(world / "models" / "lang_b")],
            "merge_method": "task_arithmetic",
            "base_model": str(world / "models" / "base"),
            "layer_granularity": 0,
            "normalize": False,
            "allow_negative_weights": False,
        },
        "tasks": [
            {"name": "tiny_math_a_mc_search", "weight": 1.0, "metric": "acc,none"},
            {"name": "tiny_facts_b_mc_search", "weight": 0.5, "metric": "acc,none"},
        ],
        "limit": 24,
    }
    path = folder / "evol_merge_config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _evolve(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(BIN / "mergekit-evo"), "evolve", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900
    )


def test_a_mergekit_evolve_command_line_and_config_run_unchanged(ray_instance, tiny_world, tmp_path):
    config = _mergekit_evolve_config(tiny_world, tmp_path)
    tasks = str(tiny_world / "tasks" / "lm_eval")
    args = ["evol_merge_config.yml", "--storage-path", "evol_storage", "--task-search-path", tasks]
    args += ["--max-fevals", "6", "--strategy", "pool", "--in-memory", "--no-merge-cuda", "--random-seed", "3"]
    args += ["--no-save-final-model", "--no-progress"]
    result = _evolve(*args, cwd=config.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    mapped = [line for line in result.stderr.splitlines() if line.startswith("mergekit-evolve flags: ")]
    assert len(mapped) == 1
    for phrase in ("--max-fevals 6 -> budget.max_evaluations", "--strategy pool -> the Ray executor", "on cpu"):
        assert phrase in mapped[0], mapped[0]
    best = tmp_path / "evol_storage" / "best_config.yaml"
    recipe = parse_merge_config(best.read_text())  # a plain mergekit recipe, as mergekit-evolve wrote
    assert recipe.merge_method == "task_arithmetic"
    store = RunStore(tmp_path / "evol_storage" / "mergekit-evo-run")
    records = store.records()
    assert len(records) >= 6 and all(r.ok for r in records)
    assert all(r.worker and r.worker.startswith("worker-") for r in records if r.cached_from is None)
    saved = yaml.safe_load((store.path / RunStore.CONFIG).read_text())
    assert saved["optimizer"]["name"] == "cma" and saved["executor"]["name"] == "ray"
    assert saved["tasks"][0]["options"]["limit"] == 24 and saved["tasks"][1]["weight"] == 0.5
    assert best.read_text() == (store.path / RunStore.BEST).read_text()


@pytest.mark.parametrize(
    "flag, words",
    [
        ("--allow-crimes", ["--allow-crimes", "checked as mergekit checks them"]),
        ("--trust-remote-code", ["--trust-remote-code", "remote code"]),
    ],
)
def test_a_flag_it_cannot_honour_is_refused_in_one_line(tiny_world, tmp_path, flag, words):
    config = _mergekit_evolve_config(tiny_world, tmp_path)
    result = _evolve(config.name, "--storage-path", "s", flag, cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "s").exists()
