"""Candidates per hour on the tiny world: the local executor against the Ray executor at 1 and 2 workers.

Each row is one whole run of the two-skill search (task arithmetic, weights per model and layer half, both skills
scored on every search item) in a fresh run directory, with the same seed. The rate is taken over the search
itself, from the first candidate recorded to the last (so the inputs' scoring, the Ray workers' start and the
final report are left out; they are given as `start s` and `total s`).

    python benchmarks/parallel.py                         # 48 candidates per row, random search and CMA-ES
    python benchmarks/parallel.py --evaluations 24 --optimizers random

Targets on a 2-core machine (issue 18): Ray at 2 workers at least 1.6x the local executor's candidates per hour,
and Ray at 1 worker within 10% of local. Run it alone: two torch processes beside it skew every figure.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mergekit_evo import hookimpl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _Clock:
    """An observer plugin, registered in code: the time each candidate is recorded."""

    def __init__(self) -> None:
        self.times: list[float] = []

    @hookimpl
    def on_candidate_scored(self, record, run_dir) -> None:
        self.times.append(time.perf_counter())


def run_one(world: Path, optimizer: str, executor: dict, evaluations: int, population: int) -> dict:
    from mergekit_evo.config import parse_config
    from mergekit_evo.demo.configs import two_skill_config
    from mergekit_evo.plugin.manager import get_plugin_manager
    from mergekit_evo.run.evolution import Evolution

    data = two_skill_config(world, evaluations, optimizer=optimizer, population=population)
    data.update(executor=executor, baselines=[])
    clock = _Clock()
    pm = get_plugin_manager()
    pm.register(clock, name="parallel-benchmark-clock")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            result = Evolution.start(parse_config(data), Path(tmp) / "run", log=lambda line: None).run(progress=False)
            total = time.perf_counter() - started
    finally:
        pm.unregister(clock)
    span = clock.times[-1] - clock.times[0]
    return {
        "candidates": len(result.records),
        "per_hour": 3600 * (len(clock.times) - 1) / span,
        "start": clock.times[0] - started,
        "total": total,
        "scores": sorted((r.index, r.seed, r.genome, r.tasks) for r in result.records),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluations", type=int, default=48)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--optimizers", default="random,cma")
    parser.add_argument("--world", type=Path, help="default: the tiny world (built on first use)")
    args = parser.parse_args(argv)

    import ray

    from mergekit_evo.demo.tiny_world import ensure_world

    world = args.world or ensure_world()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    executors = {
        "local": {"name": "local"},
        "ray, 1 worker": {"name": "ray", "options": {"workers": 1, "num_cpus": os.cpu_count()}},
        "ray, 2 workers": {"name": "ray", "options": {"workers": 2, "num_cpus": 1}},
    }
    print(f"{os.cpu_count()} CPU cores; {args.evaluations} candidates per run, population {args.population}\n")
    print("| optimizer | executor | candidates/hour | vs local | start s | total s | same records as local |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for optimizer in args.optimizers.split(","):
        local = None
        for label, executor in executors.items():
            row = run_one(world, optimizer, executor, args.evaluations, args.population)
            local = local or row
            print(
                f"| {optimizer} | {label} | {row['per_hour']:.0f} | {row['per_hour'] / local['per_hour']:.2f}x | "
                f"{row['start']:.1f} | {row['total']:.1f} | {'yes' if row['scores'] == local['scores'] else 'NO'} |",
                flush=True,
            )
    ray.shutdown()


if __name__ == "__main__":
    main()
