"""M2N2 against CMA-ES and random search on the tiny world's cross skill, at the same budget (issue 20).

The demo's genome (per-layer task-arithmetic weights in [0, 2] for math_b, `mergekit_evo.demo.configs.cross_skill_config`),
the full estimator (M2N2 is told every candidate's scores on all search items), 296 evaluations, population 8;
only the optimizer changes. Each chosen merge is measured on the held-out math_b items and compared with CMA-ES's
item by item (95% bootstrap interval, exact McNemar p).

    python benchmarks/m2n2.py                  # runs under runs/m2n2/OPTIMIZER, each resumable
    python benchmarks/m2n2.py --evaluations 96

The README's Optimizers section holds its table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dfs import BUDGET, against, heldout, run  # the same resumable run and held-out scores as the data-flow benchmark

from mergekit_evo.cli.common import quiet_libraries
from mergekit_evo.demo.configs import cross_skill_config
from mergekit_evo.demo.tiny_world import WorldSpec, ensure_world
from mergekit_evo.store.result import RunResult

OPTIMIZERS = ("cma", "m2n2", "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=BUDGET)
    parser.add_argument("--seed", type=int, default=0, help="the tiny world's seed")
    parser.add_argument("--runs", type=Path, default=Path("runs/m2n2"))
    args = parser.parse_args()
    quiet_libraries()
    world = ensure_world(spec=WorldSpec(seed=args.seed), log=lambda line: print(f"  {line}", flush=True))
    results: dict[str, RunResult] = {}
    seconds: dict[str, float] = {}
    for name in OPTIMIZERS:
        print(f"{name}: searching ({args.evaluations} evaluations)", flush=True)
        started = time.perf_counter()
        results[name] = run(cross_skill_config(world, args.evaluations, optimizer=name), world, args.runs / name)
        seconds[name] = time.perf_counter() - started

    reference = heldout(results["cma"])
    print()
    print(f"math_b, tiny world seed {args.seed}, {args.evaluations} evaluations, population 8, full estimator")
    print()
    print("| optimizer | chosen merge | search | validation | held-out | against CMA-ES's merge (held-out) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, result in results.items():
        best = result.best
        assert best is not None and result.best_scores is not None
        mine = heldout(result)
        paired = "-" if name == "cma" else against(mine, reference)
        validation = result.best_scores.get("validation", {}).get("math_b")
        shown = "-" if validation is None else f"{validation:.3f}"
        print(
            f"| {name} | candidate {best.index} | {best.tasks['math_b']['estimate']:.3f} | {shown} | "
            f"{mine.mean():.3f} | {paired} |"
        )
    print()
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
