"""Installed as users install it: the wheels of the core and of every shipped plugin, installed (not editable) into a
fresh virtual environment, list their plugins and run a short evolution from outside the checkout. This catches
package data left out of a wheel and a dependency a plugin imports but does not declare."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import yaml

from mergekit_evo.demo.configs import two_skill_config

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())
OURS = ("mergekit_evo", "__editable__", "_mergekit_evo")  # this checkout's editable installs, kept out of the new env


def _dependencies_without_us(into: Path) -> Path:
    """A folder of links to everything this environment installed except mergekit-evo and its plugins: the new
    environment reuses the dependencies (no download) but must find our packages in the wheels alone."""
    into.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(OURS) and entry.suffix != ".pth":
            (into / entry.name).symlink_to(entry)
    return into


def _source_copy(project: Path, into: Path) -> Path:
    """A copy of a project's sources to build from: setuptools writes build/ and egg-info beside the sources, and a
    test must leave the checkout as it found it."""
    skip = {".venv", "build", "dist", "tests", "__pycache__", ".pytest_cache", "runs", ".git", "plugins", "docs"}
    return Path(
        shutil.copytree(
            project,
            into / project.name,
            ignore=lambda _, names: [n for n in names if n in skip or n.endswith(".egg-info")],
        )
    )


def _run(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(command[:3])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_the_wheels_install_into_a_fresh_environment_and_run_an_evolution_outside_the_checkout(tiny_world, tmp_path):
    wheels = tmp_path / "wheels"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    for project in [ROOT, *PLUGINS]:  # built with this environment's setuptools (nothing is downloaded), from copies
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
            + [str(_source_copy(project, tmp_path / "sources"))],
            tmp_path,
            env,
        )
    assert len(list(wheels.glob("*.whl"))) == 1 + len(PLUGINS)
    assert not [p for p in [ROOT, *PLUGINS] if (p / "build").exists()]  # the checkout is left as it was

    fresh = tmp_path / "env"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env
        ).stdout.strip()
    )
    (site / "dependencies.pth").write_text(str(_dependencies_without_us(tmp_path / "dependencies")) + "\n")
    _run([str(python), "-m", "pip", "install", "--no-deps", *map(str, wheels.glob("*.whl"))], tmp_path, env)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run([str(python), "-c", "import mergekit_evo; print(mergekit_evo.__file__)"], outside, env).stdout
    assert str(site) in where and str(ROOT) not in where  # the installed wheel, not this checkout
    listed = _run([str(fresh / "bin" / "mergekit-evo"), "plugins"], outside, env).stdout
    for name in ("cma", "nsga2", "gmp-irt", "lm-eval", "ray", "wandb", "mlflow", "m2n2", "resident"):
        assert name in listed, f"{name} is not listed by the installed wheels:\n{listed}"
    assert "failed to load" not in listed.lower()

    config = two_skill_config(tiny_world, max_evaluations=4, population=4, optimizer="cma")
    (outside / "run.yaml").write_text(yaml.safe_dump(config))
    _run([str(fresh / "bin" / "mergekit-evo"), "run", "run.yaml", "--run-dir", "run"], outside, env)
    records = (outside / "run" / "candidates.jsonl").read_text().splitlines()
    assert len(records) == 4 and (outside / "run" / "best.yaml").is_file()
    # the package data a build needs travelled too: the reference weight hashes of the tiny world
    code = "from mergekit_evo.demo.tiny_world.numerics import reference_weights; print(len(reference_weights()))"
    assert int(_run([str(python), "-c", code], outside, env).stdout) >= 1
