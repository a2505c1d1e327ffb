"""Shared fixtures: the tiny world (from mergekit_evo.testing, as plugins use it) and its manifest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mergekit_evo.testing import fake_plugins, micro_world, offline, tiny_world  # noqa: F401  (session fixtures)

offline()  # before anything imports the Hugging Face libraries: tests never download

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs 2 workers on 2 cores: torch's OpenMP threads in both would spin against each other (a test
    # 20x slower, README's performance notes), so each worker, and the processes it starts, computes on one thread
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tiers: a test on the 8-layer tiny world is marked `world` (it judges what models know, or merges them
    bitwise), so `make check` can leave it, and the slow ones, to `make test`."""
    for item in items:
        if "tiny_world" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.world)


@pytest.fixture(scope="session")
def manifest(tiny_world: Path) -> dict:  # noqa: F811
    from mergekit_evo.demo.tiny_world import load_manifest

    return load_manifest(tiny_world)


# ------------------------------------------------------------------------------------------- browser tests


def find_chromium() -> str | None:
    """The system's Chromium (Debian's `chromium`), or MERGEKIT_EVO_CHROMIUM; Playwright's own download is not used."""
    import os
    import shutil

    named = os.environ.get("MERGEKIT_EVO_CHROMIUM")
    if named:
        return named
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by Playwright. Without one the browser tests are skipped with the reason, unless
    MERGEKIT_EVO_REQUIRE_BROWSER=1 (as .ci/run sets, after installing Chromium), where they fail instead."""
    import os

    executable = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        reason = "no Chromium on this machine (apt-get install chromium, or set MERGEKIT_EVO_CHROMIUM)"
        if os.environ.get("MERGEKIT_EVO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MERGEKIT_EVO_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where the browser tests keep their screenshots: MERGEKIT_EVO_TEST_ARTIFACTS, else test-artifacts/."""
    import os

    folder = Path(os.environ.get("MERGEKIT_EVO_TEST_ARTIFACTS") or Path(__file__).parent.parent / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
