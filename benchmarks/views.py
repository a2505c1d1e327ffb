"""What looking at a run costs: report.html and the dashboard's state, on a finished run directory.

    python benchmarks/views.py RUN_DIR [--repeats 5]

Prints a Markdown table: reading the run directory (`load_view`), building every figure, writing report.html, and the
dashboard's two answers to a poll (a changed run is read and every view rebuilt; an unchanged one is a 204 from
file sizes and times). With no RUN_DIR it runs the demo's config for a few generations into a temporary folder first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mergekit_evo.views.dashboard import Dashboard
from mergekit_evo.views.report_html import report_html, state, to_json
from mergekit_evo.views.run_view import load_view


def timed(work: Callable[[], object], repeats: int) -> float:
    """The median wall time of `work`, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def small_run(folder: Path) -> Path:
    from mergekit_evo.config import parse_config
    from mergekit_evo.demo.configs import cross_skill_config
    from mergekit_evo.demo.tiny_world import ensure_world
    from mergekit_evo.run.evolution import Evolution

    world = ensure_world()
    data = cross_skill_config(world, 64)
    Evolution.start(parse_config(data, world), folder / "run", log=lambda _: None).run(progress=False)
    return folder / "run"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.run_dir or small_run(Path(scratch))
        view = load_view(run_dir, log=lambda _: None)
        board = Dashboard(run_dir)
        name = view.name
        version = json.loads(board.route(f"/run/{name}/state")[2])["version"]
        rows = [
            ("read the run directory (load_view)", timed(lambda: load_view(run_dir, log=lambda _: None), args.repeats)),
            ("build every view (state)", timed(lambda: to_json(state(view)), args.repeats)),
            (
                "report.html, whole (read, build, inline plotly.js)",
                timed(lambda: report_html(load_view(run_dir, log=lambda _: None)), args.repeats),
            ),
            (
                "dashboard poll, run changed (read and rebuild)",
                timed(lambda: to_json(state(load_view(run_dir, log=lambda _: None))), args.repeats),
            ),
            (
                "dashboard poll, run unchanged (204)",
                timed(lambda: board.route(f"/run/{name}/state?since={version}"), args.repeats),
            ),
        ]
        print(
            f"{len(view.records)} candidates, {len(view.records[0].genes) if view.records else 0} genes ({run_dir})\n"
        )
        print("| what | median seconds |\n| --- | --- |")
        for what, seconds in rows:
            print(f"| {what} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
