"""Small helpers shared by tests: running the CLI in a subprocess and reading safetensors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

BIN = Path(sys.executable).parent


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(BIN / "mergekit-evo"), *args], capture_output=True, text=True, timeout=timeout, env=env)


def tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def write_config(world: Path, folder: Path, max_evaluations: int = 12, population: int = 4, **changes) -> Path:
    """The demo's config with `changes`, as a YAML file a user would pass to `mergekit-evo run`."""
    from mergekit_evo.demo import demo_config

    data = demo_config(world, max_evaluations, population=population)
    data.update(changes)
    path = Path(folder) / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
