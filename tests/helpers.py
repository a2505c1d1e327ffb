"""Small helpers shared by tests: running the CLI in a subprocess and reading safetensors."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

BIN = Path(sys.executable).parent


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(BIN / "mergekit-evo"), *args], capture_output=True, text=True, timeout=timeout, env=env)


def cli_here(*args: str) -> subprocess.CompletedProcess:
    """`mergekit-evo ARGS` run in this process (its exit status, standard output and error captured), for tests that
    run many commands: the same `main` as the installed command, without a new interpreter importing torch each time.
    """
    import io

    from mergekit_evo.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(["mergekit-evo", *args], code, out.getvalue(), err.getvalue())


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


def item_count(world: Path, skill: str, split: str) -> int:
    """How many items a tiny-world skill has in a split (the world's sizes are the builder's to choose)."""
    from mergekit_evo.demo.tiny_world import task_file

    return sum(1 for line in task_file(world, skill, split).read_text().splitlines() if line.strip())


def write_config(world: Path, folder: Path, max_evaluations: int = 12, population: int = 4, **changes) -> Path:
    """The demo's config with `changes`, as a YAML file a user would pass to `mergekit-evo run`."""
    from mergekit_evo.demo.configs import two_skill_config

    data = two_skill_config(world, max_evaluations, population=population)
    data.update(changes)
    path = Path(folder) / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.contextmanager
def registered(plugin: object, name: str):
    """`plugin` registered with mergekit-evo's plugin manager for the duration, unregistered however the body ends."""
    from mergekit_evo.plugin.manager import get_plugin_manager

    get_plugin_manager().register(plugin, name=name)
    try:
        yield plugin
    finally:
        get_plugin_manager().unregister(plugin)


@contextlib.contextmanager
def read_only(folder: Path):
    """Make `folder` unwritable for the duration, as a read-only share or another user's folder would be.

    Permission bits do not stop root, so as root the folder is bind-mounted over itself read-only (the kernel then
    answers EROFS, as for a read-only share); otherwise its write bits are removed (EACCES).
    """
    folder = Path(folder)
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def can_mount() -> bool:
    """Whether this process may mount file systems (root with the capability to): the full-disk test needs a tmpfs."""
    if os.geteuid() != 0:
        return False
    probe = Path(tempfile.mkdtemp())
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
        return mounted.returncode == 0 and subprocess.run(["umount", str(probe)]).returncode == 0
    finally:
        probe.rmdir()


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "4m"):
    """A real, small file system (tmpfs) mounted at `folder`, so writes can fill it."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill_disk(folder: Path) -> Path:
    """Write a filler file until the file system under `folder` is full; delete it to free the space again."""
    filler = Path(folder) / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * chunk):
                    pass
    finally:
        os.close(fd)
    return filler


def designed_record(index: int, generation: int = 0, member: int | None = None, fitness: float = 0.5):
    """A scored candidate record with the fitness a test chooses (one task, `t`), as a run would append it."""
    from mergekit_evo.store.runs import CandidateRecord

    return CandidateRecord(
        index=index,
        generation=generation,
        member=index if member is None else member,
        genome=[0.5],
        genes={"weight": 0.5},
        merge_yaml=f"recipe {index}\n",
        seed=index,
        status="ok",
        objectives=[fitness],
        fitness=fitness,
        tasks={"t": {"estimate": fitness}},
    )


def benchmark(name: str):
    """benchmarks/NAME.py as a module, for the tests that run a benchmark in a reduced form."""
    import importlib.util

    path = Path(__file__).parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def snapshot(folder: Path, but: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file's bytes under `folder`, by relative path, but those named in `but`: to show a reader wrote nothing."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in but)
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}
