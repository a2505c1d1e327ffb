"""Data-flow search on the tiny world (issue 20): does DFS, or PS+DFS, beat parameter-space merging (PS) alone?

Sakana's EvoLLM-JP: PS 52.0, PS+DFS 55.2 on MGSM-JA. Here the target is the tiny world's cross skill, math_b
(arithmetic asked in language B, which neither parent does), at an equal budget per search, CMA-ES throughout:

- **PS**: the demo's search (per-layer task-arithmetic weights in [0, 2], `mergekit_evo.demo.configs.cross_skill_config`);
- **DFS**: a path of layers through math_a and lang_b (`genome.dfs`, 2 repeats, at most `--max-layers` layers);
- **PS+DFS**: the same, with PS's chosen merge (its best.yaml) as a third source, listed first, so the search starts
  from the PS merge as it is.

Each chosen merge is measured on the held-out math_b items, and DFS and PS+DFS are compared with PS's chosen merge
item by item (95% bootstrap interval, exact McNemar p).

    python benchmarks/dfs.py                       # 296 evaluations each, runs under runs/dfs
    python benchmarks/dfs.py --seed 1              # another tiny world (built on first use, about 4 minutes)
    python benchmarks/dfs.py --evaluations 96

Each run directory is resumable. The README's "Data-flow search" section holds its table.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import yaml

from mergekit_evo.cli.common import quiet_libraries
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import cross_skill_config
from mergekit_evo.demo.tiny_world import WorldSpec, ensure_world
from mergekit_evo.rank.significance import compare
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.space.dataflow import recipe_layers
from mergekit_evo.store.result import RunResult
from mergekit_evo.store.runs import RunStore

# Each search's budget in the tables of docs/search-spaces.md and docs/components.md (the demo's budget until
# world v4, when the demo moved to 600).
BUDGET = 296


def run(config: dict, world: Path, run_dir: Path) -> RunResult:
    if RunStore(run_dir).parts():
        evolution = Evolution.resume(run_dir, log=lambda _: None)
    else:
        evolution = Evolution.start(parse_config(config, world), run_dir, log=lambda _: None)
    return evolution.run(progress=False)


def data_flow(ps: dict, max_layers: int, merged: Path | None) -> dict:
    config = copy.deepcopy(ps)
    dfs: dict = {"repeats": 2, "max_layers": max_layers}
    if merged is not None:
        dfs["merged_sources"] = [{"name": "ps", "recipe": str(merged)}]
    config.update(merge_method="passthrough", base_model=None, genome={"dfs": dfs})
    return config


def heldout(result: RunResult) -> np.ndarray:
    assert result.best_scores is not None
    return np.asarray(result.best_scores["items"]["heldout"]["math_b"], dtype=float)


def against(mine: np.ndarray, reference: np.ndarray) -> str:
    """A paired comparison on the same items, as the tables print it."""
    c = compare(mine, reference)
    return f"{c.difference:+.3f} [{c.low:+.3f}, {c.high:+.3f}], p {c.p_mcnemar:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=BUDGET)
    parser.add_argument("--max-layers", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="the tiny world's seed")
    parser.add_argument("--runs", type=Path, default=Path("runs/dfs"))
    args = parser.parse_args()
    quiet_libraries()
    world = ensure_world(spec=WorldSpec(seed=args.seed), log=lambda line: print(f"  {line}", flush=True))
    ps_config = cross_skill_config(world, args.evaluations)
    results: dict[str, RunResult] = {}
    seconds: dict[str, float] = {}
    plan = [
        ("PS", lambda: ps_config),
        ("DFS", lambda: data_flow(ps_config, args.max_layers, None)),
        ("PS+DFS", lambda: data_flow(ps_config, args.max_layers, args.runs.resolve() / "ps" / "best.yaml")),
    ]
    for name, config in plan:
        started = time.perf_counter()
        print(f"{name}: searching ({args.evaluations} evaluations)", flush=True)
        results[name] = run(config(), world, args.runs / name.lower().replace("+", "-"))
        seconds[name] = time.perf_counter() - started
    ps = heldout(results["PS"])
    print()
    print(f"math_b, tiny world seed {args.seed}, {args.evaluations} evaluations per search, CMA-ES, population 8")
    print()
    print("| search | chosen merge | layers | search | validation | held-out | against PS's merge (held-out) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, result in results.items():
        best = result.best
        assert best is not None and result.best_scores is not None
        layers = recipe_layers(yaml.safe_load(best.merge_yaml))
        mine = heldout(result)
        paired = "-" if name == "PS" else against(mine, ps)
        validation = result.best_scores.get("validation", {}).get("math_b")
        print(
            f"| {name} | candidate {best.index} | {layers} | {best.tasks['math_b']['estimate']:.3f} | "
            f"{validation if validation is None else f'{validation:.3f}'} | {mine.mean():.3f} | {paired} |"
        )
    print()
    parents = {Path(ref).name: entry["heldout"]["math_b"] for ref, entry in results["PS"].inputs.items()}
    print("parents on held-out math_b: " + ", ".join(f"{k} {v:.3f}" for k, v in parents.items()))
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
