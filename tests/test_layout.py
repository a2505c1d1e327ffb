"""The core's folders show its architecture: packages in a fixed order of layers, no import cycle and no import running
back up (a lower package importing a higher one). benchmarks/import_map.py draws the map; this runs its --check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "benchmarks" / "import_map.py"


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MAP), "--check", "--imports", "all", *args], capture_output=True, text=True
    )


def test_the_core_has_no_import_cycle_no_import_running_back_up_and_no_long_module_or_function() -> None:
    done = check()
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 import cycles" in done.stdout
    assert "0 imports running back up" in done.stdout
    assert "0 modules over 450 lines" in done.stdout and "0 functions over 80 lines" in done.stdout


def write_package(root: Path, modules: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, source in modules.items():
        path = package.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in [package, *path.parent.relative_to(package).parents, path.parent.relative_to(package)]:
            (package / folder / "__init__.py").touch()
        path.write_text(source)
    return package


def test_the_check_names_an_import_running_back_up_a_cycle_and_a_long_function(tmp_path: Path) -> None:
    upward = write_package(
        tmp_path / "up",
        {"store.records": "from pkg.views.report import draw\n", "views.report": "def draw(): ...\n"},
    )
    done = check("--root", str(upward))
    assert done.returncode == 1
    assert "up: pkg.store.records -> pkg.views.report" in done.stdout

    cyclic = write_package(
        tmp_path / "cycle",
        {"space.genome": "import pkg.space.dataflow\n", "space.dataflow": "import pkg.space.genome\n"},
    )
    done = check("--root", str(cyclic))
    assert done.returncode == 1
    assert "cycle: pkg.space.dataflow -> pkg.space.genome" in done.stdout

    long = write_package(
        tmp_path / "long",
        {"run.loop": "def loop():\n" + "    x = 1\n" * 80 + "    return x\n", "run.small": "def small(): ...\n"},
    )
    done = check("--root", str(long))
    assert done.returncode == 1
    assert "1 functions over 80 lines\n  pkg.run.loop.loop 82" in done.stdout

    fine = write_package(
        tmp_path / "fine", {"views.report": "from pkg.store.records import read\n", "store.records": ""}
    )
    assert check("--root", str(fine)).returncode == 0
