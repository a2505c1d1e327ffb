"""The cross-skill experiment (issue 15) over several tiny-world seeds, through the product end to end.

For each seed: build (or reuse) the world, run the demo's search (`mergekit_evo.demo.configs.cross_skill_config`: per-layer
task-arithmetic weights in [0, 2] for math_b, CMA-ES, 600 evaluations, a fifth of the search items for
validation), then print the parents, the plain-merge baselines and the chosen merge on search, validation and
held-out items, and the chosen merge's paired comparisons on held-out math_b (95% bootstrap interval, exact McNemar p).

    python benchmarks/cross_skill.py                    # seeds 0-4, runs under runs/cross-skill/seed-N
    python benchmarks/cross_skill.py --seeds 0 --evaluations 100
    python benchmarks/cross_skill.py --validation-only --language-lr 0.001 --runs runs/cross-skill-lr1e-3
    python benchmarks/cross_skill.py --validation-only --layer-groups 4 --runs runs/cross-skill-4-groups

Each run directory is resumable: a killed benchmark continues where it stopped, and a finished one only prints its
tables again (so `--validation-only` first, to choose settings, then without it once, for the held-out verdict).
About 3.5 minutes a seed on 2 cores, plus about 6 minutes for each world not yet built. docs/tiny-world.md holds its
table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mergekit_evo.cli.common import quiet_libraries
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import DEMO_EVALUATIONS, cross_skill_config
from mergekit_evo.demo.tiny_world import WorldSpec, ensure_world
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.store.result import RunResult
from mergekit_evo.store.runs import RunStore

TARGET = {"over parents": 0.25, "over plain merges": 0.10, "p": 0.01, "search drop": 0.05}


def run_seed(
    seed: int, evaluations: int, runs: Path, language_lr: float | None = None, layer_groups: int | None = None
) -> RunResult:
    spec = WorldSpec(seed=seed) if language_lr is None else WorldSpec(seed=seed, language_lr=language_lr)
    world = ensure_world(spec=spec, log=lambda line: print(f"  {line}", flush=True))
    run_dir = runs / f"seed-{seed}"
    if RunStore(run_dir).parts():
        evolution = Evolution.resume(run_dir, log=lambda _: None)
    else:
        data = cross_skill_config(world, evaluations)
        if layer_groups is not None:  # fewer genes: one weight per model and group of adjacent layers
            data["genome"]["layer_groups"] = layer_groups
        config = parse_config(data, world)
        evolution = Evolution.start(config, run_dir, log=lambda _: None)
    return evolution.run(progress=False)


def _row(name: str, entry: dict) -> str:
    def cell(key: str) -> str:
        value = entry.get(key, {}).get("math_b")
        return "-" if value is None else f"{value:.3f}"

    return f"| {name} | {cell('tasks')} | {cell('validation')} | {cell('heldout')} |"


def seed_table(seed: int, result: RunResult) -> list[str]:
    lines = [
        f"seed {seed}: math_b accuracy (multiple choice)",
        "",
        "| model | search | validation | held-out |",
        "| --- | --- | --- | --- |",
    ]
    for ref, entry in result.inputs.items():
        lines.append(_row(f"{Path(ref).name} (input)", entry))
    for name, entry in result.baselines.items():
        lines.append(_row(f"{name} (plain merge)", entry) if "error" not in entry else f"| {name} | failed | | |")
    best = result.best
    chosen = {"tasks": {"math_b": best.tasks["math_b"]["estimate"]}, **(result.best_scores or {})}
    lines.append(_row(f"**evolved** (candidate {best.index})", chosen))
    return lines


def verdict(seed: int, result: RunResult) -> str:
    """One line: the chosen merge against the best parent and the best plain merge on held-out math_b."""
    by = {other: c["math_b"] for other, c in result.comparisons.items()}
    parents = {o: c for o, c in by.items() if o.endswith("(input)")}
    plain = {o: c for o, c in by.items() if o.endswith("(baseline)")}
    # the smallest margin is the one that matters: against the strongest parent and the strongest plain merge
    parent = min(parents.items(), key=lambda kv: kv[1]["difference"])
    merge = min(plain.items(), key=lambda kv: kv[1]["difference"])
    # the chosen merge's held-out accuracy against its search accuracy: how much the search's pick flattered it
    drop = result.best.tasks["math_b"]["estimate"] - (result.best_scores or {}).get("heldout", {}).get("math_b", 0.0)
    met = (
        parent[1]["difference"] >= TARGET["over parents"]
        and parent[1]["p_mcnemar"] < TARGET["p"]
        and merge[1]["difference"] >= TARGET["over plain merges"]
        and merge[1]["p_mcnemar"] < TARGET["p"]
        and drop <= TARGET["search drop"]
    )

    def say(name: str, c: dict) -> str:
        return f"{c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] vs {name}, p {c['p_mcnemar']:.2g}"

    return (
        f"| {seed} | {parent[1]['n']} | {say(*parent)} | {say(*merge)} | {drop:+.3f} | {'met' if met else 'not met'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--evaluations", type=int, default=DEMO_EVALUATIONS)
    parser.add_argument("--runs", type=Path, default=Path("runs/cross-skill"))
    parser.add_argument(
        "--language-lr",
        type=float,
        help="the language specialist's learning rate, for world designs other than the default (world v4: 2e-3; "
        "5e-4 was world v3's); use another --runs folder for each",
    )
    parser.add_argument(
        "--layer-groups",
        type=int,
        help="weights per model (default: one per layer, 8): adjacent layers share one; use another --runs folder",
    )
    parser.add_argument(
        "--validation-only",
        action="store_true",
        help="print search and validation scores only: for choosing a design or search settings without held-out",
    )
    args = parser.parse_args()
    quiet_libraries()  # transformers' per-load progress bars would drown the tables
    verdicts = []
    for seed in args.seeds:
        started = time.time()
        print(f"seed {seed}: world and search ...", flush=True)
        result = run_seed(seed, args.evaluations, args.runs, args.language_lr, args.layer_groups)
        table = seed_table(seed, result)
        if args.validation_only:  # the held-out column dropped, unread
            table = [line.rsplit(" |", 2)[0] + " |" if line.startswith("|") else line for line in table]
        print("\n".join(table), flush=True)
        print(f"({time.time() - started:.0f} s)\n", flush=True)
        verdicts.append(verdict(seed, result))
    if args.validation_only:
        return
    print(
        "Held-out math_b, the evolved merge against its weakest margin (paired by item; 95% bootstrap interval, "
        f"exact McNemar p); target: >= {TARGET['over parents']} over every parent and >= "
        f"{TARGET['over plain merges']} over every plain merge, p < {TARGET['p']}, and the chosen merge's search "
        f"accuracy at most {TARGET['search drop']} above its held-out accuracy\n"
    )
    print("| seed | items | against the best parent | against the best plain merge | search - held-out | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
