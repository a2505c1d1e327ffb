"""`make` installs the lock: every package at the version requirements.lock names, torch at the Makefile's pin."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name] = version
    return pins


def test_every_installed_package_is_the_locked_version():
    pins = _pins()
    assert {"mergekit", "transformers", "lm_eval", "ray"} <= {re.sub(r"[-_.]+", "_", n.lower()) for n in pins}
    installed = {name: importlib.metadata.version(name) for name in pins}
    assert {n: (pins[n], v) for n, v in installed.items() if v != pins[n]} == {}


def test_torch_is_the_makefile_s_pin_and_not_in_the_lock():
    pin = re.search(r"^TORCH := torch==(\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert pin is not None and torch.__version__.split("+")[0] == pin.group(1)
    assert "torch" not in {n.lower() for n in _pins()}
