"""How close each fitness estimator comes to the full-split accuracy, and what it costs: MERGE3's table, measured.

On the tiny world (the demo's genome: task arithmetic over the two specialists, weights per model and layer half),
a set of held-out merges, never used in any fit, is scored on every search item. For n anchors per task, each
estimator (plain `subsample` and the IRT plugin's `irt`, `p-irt`, `gp-irt`, `mp-irt`, `gmp-irt`) is prepared as in a
run (input models and a calibration population of merges scored on every item, IRT fitted, anchors chosen) and
its estimate from the anchors is compared with the held-out merge's full accuracy. Errors are mean absolute
differences in accuracy points, over held-out merges, both tasks and several seeds.

    python benchmarks/estimator_error.py
    python benchmarks/estimator_error.py --anchors 10,20 --seeds 3 --heldout 32 --calibration 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np

ESTIMATORS = ["subsample", "irt", "p-irt", "gp-irt", "mp-irt", "gmp-irt"]


def scorer(world, merger_name: str = "resident"):
    """The demo's genome, a merger and the two tasks' backends: what a run would score with."""
    from mergekit_evo.config import parse_config
    from mergekit_evo.demo import two_skill_config
    from mergekit_evo.genome import GenomeSpace
    from mergekit_evo.plugins import registry

    config = parse_config({**two_skill_config(world), "merger": merger_name}, world)
    reg = registry()
    merger = reg.get("mergers", config.merger.name, "merger")(config)
    tasks = {t.name: reg.get("task_backends", t.backend, "tasks")(t) for t in config.tasks}
    genome = GenomeSpace(config)

    def score(model):
        return {n: np.asarray(t.score(model, range(len(t.item_ids))), dtype=float) for n, t in tasks.items()}

    def score_point(x):
        with merger.merged(genome.to_merge_config(x), seed=0) as model:
            return score(model)

    def score_ref(ref):
        with merger.input_model(ref) as model:
            return score(model)

    refs = config.input_refs()
    return {n: t.item_ids for n, t in tasks.items()}, genome.dim, refs, score_ref, score_point


def errors(anchors: list[int], seeds: int, n_heldout: int, calibration: int, log=print) -> dict:
    from mergekit_evo.plugins import registry
    from mergekit_evo.responses import StaticResponses
    from mergekit_evo.tiny_world import ensure_world

    world = ensure_world(log=log)
    item_ids, dim, refs, score_ref, score_point = scorer(world)
    started = time.perf_counter()
    endpoints = {ref: score_ref(ref) for ref in refs}
    heldout_points = np.random.default_rng(12345).random((n_heldout, dim))
    heldout = [score_point(x) for x in heldout_points]
    log(f"scored {len(refs)} input models and {n_heldout} held-out merges in {time.perf_counter() - started:.0f} s")
    cache: dict = {}  # calibration merges shared by every estimator of a seed

    def source(seed):
        if seed not in cache:
            cache[seed] = StaticResponses(item_ids, dim, seed, endpoints, score_point)
        return cache[seed]

    reg = registry()
    table = {}
    for n in anchors:
        for name in ESTIMATORS:
            errs = []
            for seed in range(seeds):
                options = {"k": n} if name == "subsample" else {"n": n, "calibration": calibration}
                estimator = reg.get("estimators", name, "estimator")(options=options, seed=seed)
                estimator.prepare(source(seed))
                for task, ids in item_ids.items():
                    chosen = np.asarray(estimator.select(task, len(ids)))
                    for scores in heldout:
                        estimate = estimator.estimate(task, chosen, scores[task][chosen])
                        errs.append(abs(estimate - scores[task].mean()))
            table[(n, name)] = 100 * float(np.mean(errs))
        log(format_row(n, item_ids, table))
    return table


def format_row(n: int, item_ids: dict, table: dict) -> str:
    n_items = int(np.mean([len(v) for v in item_ids.values()]))
    cells = " | ".join(f"{table[(n, e)]:.2f}" for e in ESTIMATORS)
    return f"| {n} | {n_items / n:.1f}x | {cells} |"


def main(argv: list[str] | None = None) -> None:
    from mergekit_evo.cli import _quiet_libraries

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anchors", default="10,20,50,100", help="anchors per task, comma-separated")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--heldout", type=int, default=48, help="held-out merges the errors are measured on")
    parser.add_argument("--calibration", type=int, default=16, help="calibration merges for the IRT fit")
    args = parser.parse_args(argv)
    _quiet_libraries()
    print("| anchors per task | cost ratio (full / n) | " + " | ".join(ESTIMATORS) + " |")
    print("| --- | --- |" + " --- |" * len(ESTIMATORS))
    errors(
        [int(a) for a in args.anchors.split(",")],
        args.seeds,
        args.heldout,
        args.calibration,
        log=lambda line: print(line, flush=True),
    )


if __name__ == "__main__":
    main()
