"""How close each fitness estimator comes to the full-split accuracy where the optimizer actually goes, and at what cost.

Each estimator (the core's `subsample` and the IRT plugin's `irt`, `p-irt`, `gp-irt`, `mp-irt`, `gmp-irt`) is prepared
as in a run: the input models and a calibration population of merges (a Latin hypercube of the run's genome) scored
on every search item, IRT fitted, anchors chosen. Its estimate from the anchors is then compared with the true
accuracy on all search items of merges it never saw, in several sets:

  two-skill run (math_a and facts_b; task arithmetic, a weight per model and layer half in [0, 1]):
    like calibration     random merges of the run's own genome
    per-layer [0, 2]     task arithmetic with a weight per model and layer, in [0, 2]
    dare_ties            dare_ties, weight in [0, 1] and density in [0.1, 1.0] per model and layer half
  cross-skill run (math_b, the demo's search: a task-arithmetic weight per model and layer in [0, 2]):
    like calibration     random merges of the run's own genome
    CMA-ES visited       every candidate of CMA-ES runs driven by the full score (296 each: the demo's budget before v4)
    CMA-ES last gens     their last 4 generations: where a search ends up
    CMA-ES top 10        the 10 distinct visited candidates each estimator rates highest

For each set: the mean and max absolute error in accuracy points (per task), the rank correlation (Spearman) between
estimate and truth on the run's objective, and the top-1 regret: how far (points) the candidate the estimator rates
best falls below the set's truly best. Finally the audit (`estimator.audit`) is replayed along the CMA-ES runs with
the product's own decision code: a share of candidates and every contender for best scored on all items, refits on
drift; its cost per candidate counts those items, and `subsample` at that same cost is the yardstick.

    python benchmarks/estimator_error.py
    python benchmarks/estimator_error.py --anchors 20 --seeds 2 --heldout 16 --runs 1
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ESTIMATORS = ["subsample", "irt", "p-irt", "gp-irt", "mp-irt", "gmp-irt"]
Scores = dict[str, np.ndarray]


@dataclass
class Setup:
    """A run the estimators are calibrated for, and the sets of merges (full scores) they are measured on."""

    name: str
    item_ids: dict[str, list[str]]
    dim: int
    inputs: dict[str, Scores]
    score_point: Callable[[np.ndarray], Scores]
    start: np.ndarray  # the run's start point, where `calibration_around: start` calibrates
    sets: dict[str, list[Scores]] = field(default_factory=dict)
    runs: list[list[list[Scores]]] = field(default_factory=list)  # CMA-ES runs: generations of candidates


def scorer(world: Path, data: dict):
    """The genome, merger and task backends a run of config `data` would score with: (item ids, dim, input refs,
    score_ref, score_point, start point)."""
    from mergekit_evo.config import parse_config
    from mergekit_evo.plugin.manager import registry
    from mergekit_evo.space.genome import GenomeSpace

    config = parse_config({**data, "merger": "resident"}, world)
    reg = registry()
    merger = reg.get("mergers", config.merger.name, "merger")(config=config)
    tasks = {t.name: reg.get("task_backends", t.backend, "tasks")(config=t) for t in config.tasks}
    genome = GenomeSpace(config)

    def score(model) -> Scores:
        return {n: np.asarray(t.score(model, range(len(t.item_ids))), dtype=float) for n, t in tasks.items()}

    def score_point(x: np.ndarray) -> Scores:
        with merger.merged(genome.to_merge_config(x), seed=0) as model:
            return score(model)

    def score_ref(ref: str) -> Scores:
        with merger.input_model(ref) as model:
            return score(model)

    item_ids = {n: t.item_ids for n, t in tasks.items()}
    return item_ids, genome.dim, config.input_refs(), score_ref, score_point, genome.initial_point()


def _random_merges(world: Path, data: dict, n: int, seed: int) -> list[Scores]:
    _, dim, _, _, score_point, _ = scorer(world, data)
    return [score_point(x) for x in np.random.default_rng(seed).random((n, dim))]


def _setup(world: Path, name: str, data: dict) -> Setup:
    item_ids, dim, refs, score_ref, score_point, start = scorer(world, data)
    return Setup(name, item_ids, dim, {ref: score_ref(ref) for ref in refs}, score_point, start)


def two_skill(world: Path, n_heldout: int, log) -> Setup:
    from mergekit_evo.demo.configs import cross_skill_config, two_skill_config

    data = two_skill_config(world)
    setup = _setup(world, "two-skill", data)
    setup.sets["like calibration"] = _random_merges(world, data, n_heldout, 12345)
    wide = {**data, "genome": cross_skill_config(world)["genome"]}
    setup.sets["per-layer [0, 2]"] = _random_merges(world, wide, n_heldout, 12346)
    dare = {
        **data,
        "merge_method": "dare_ties",
        "genome": {
            "parameters": {"weight": {"min": 0.0, "max": 1.0}, "density": {"min": 0.1, "max": 1.0}},
            "layer_groups": 2,
        },
    }
    setup.sets["dare_ties"] = _random_merges(world, dare, n_heldout, 12347)
    log(f"two-skill run: {len(setup.inputs)} input models and {3 * n_heldout} held-out merges scored")
    return setup


def cross_skill(world: Path, n_heldout: int, runs: int, evaluations: int, log) -> Setup:
    """The demo's search without its validation share (every item is a search item), and CMA-ES runs of it driven
    by the full score, whose records hold every visited candidate on every item."""
    from mergekit_evo.config import parse_config
    from mergekit_evo.demo.configs import cross_skill_config
    from mergekit_evo.run.evolution import Evolution

    data = cross_skill_config(world, max_evaluations=evaluations)
    for task in data["tasks"]:
        task.pop("validation", None)
    setup = _setup(world, "cross-skill", data)
    setup.sets["like calibration"] = _random_merges(world, data, n_heldout, 12345)
    for seed in range(runs):
        folder = Path(tempfile.mkdtemp(prefix="estimator-error-"))
        try:
            config = parse_config({**data, "seed": seed, "baselines": []}, world)
            result = Evolution.start(config, folder / "run", log=lambda _: None).run(progress=False)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        generations: dict[int, list[Scores]] = {}
        for r in result.records:
            if r.ok:
                scores = {t: np.asarray(v["scores"], dtype=float) for t, v in r.tasks.items()}
                generations.setdefault(r.generation, []).append(scores)
        setup.runs.append([generations[g] for g in sorted(generations)])
    visited = [c for run in setup.runs for gen in run for c in gen]
    setup.sets["CMA-ES visited"] = visited
    setup.sets["CMA-ES last gens"] = [c for run in setup.runs for gen in run[-4:] for c in gen]
    log(f"cross-skill run: {n_heldout} held-out merges and {runs} CMA-ES runs ({len(visited)} candidates) scored")
    return setup


# ------------------------------------------------------------------------------------------ measuring


def prepared(name: str, n: int, calibration: int, seed: int, source, irt_options: dict | None = None):
    from mergekit_evo.plugin.manager import registry

    options = {"k": n} if name == "subsample" else {"n": n, "calibration": calibration, **(irt_options or {})}
    estimator = registry().get("estimators", name, "estimator")(options=options, seed=seed)
    estimator.prepare(source)
    selection = {task: np.asarray(estimator.select(task, len(ids))) for task, ids in source.item_ids.items()}
    return estimator, selection


def estimates(estimator, selection, merges: list[Scores]) -> np.ndarray:
    """(merges, tasks) estimates."""
    return np.array([[estimator.estimate(t, idx, m[t][idx]) for t, idx in selection.items()] for m in merges])


def truths(merges: list[Scores], tasks) -> np.ndarray:
    return np.array([[m[t].mean() for t in tasks] for m in merges])


def figures(est: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Errors per task (points), and on the objective (the tasks' mean): rank correlation and top-1 regret."""
    errors = np.abs(est - truth)
    objective_est, objective_truth = est.mean(1), truth.mean(1)
    rank = float(spearmanr(objective_est, objective_truth).statistic) if np.ptp(objective_est) > 0 else float("nan")
    return {
        "mae": 100 * float(errors.mean()),
        "max": 100 * float(errors.max()),
        "rank": rank,
        "regret": 100 * float(objective_truth.max() - objective_truth[int(np.argmax(objective_est))]),
    }


def top10(est: np.ndarray, merges: list[Scores]) -> list[int]:
    """The 10 distinct merges (by their scores) the estimator rates highest."""
    seen, out = set(), []
    for i in np.argsort(-est.mean(1), kind="stable"):
        key = tuple(np.concatenate(list(merges[i].values())).tolist())
        if key not in seen:
            seen.add(key)
            out.append(int(i))
        if len(out) == 10:
            break
    return out


def replay_audit(estimator, selection, run: list[list[Scores]], seed: int, audit) -> dict:
    """An audited run along a CMA-ES trajectory, decided by the product's audit code: what the optimizer was told
    (errors, rank), the accepted best's regret, and the items scored per candidate, audits included."""
    from mergekit_evo.estimate.audit import audited, drift, reasons
    from mergekit_evo.rank.ranking import RunningBest
    from mergekit_evo.store.runs import CandidateRecord

    tasks = list(selection)
    n_all = sum(len(next(iter(run))[0][t]) for t in tasks)
    n_cheap = sum(len(idx) for idx in selection.values())
    running = RunningBest("weighted", guarded=audit.new_best)
    records: list[CandidateRecord] = []
    told, truth, full_items, since = [], [], 0, 0
    for generation, candidates in enumerate(run):
        for member, scores in enumerate(candidates):
            index = len(records)
            est = {t: estimator.estimate(t, idx, scores[t][idx]) for t, idx in selection.items()}
            fitness = float(np.mean(list(est.values())))
            why = reasons(audit, seed, index, fitness, running)
            full = {t: float(scores[t].mean()) for t in tasks}
            record = CandidateRecord(
                index=index,
                generation=generation,
                member=member,
                genome=[],
                genes={},
                merge_yaml="",
                seed=0,
                status="ok",
                objectives=[fitness],
                fitness=fitness,
                tasks={t: {"estimate": e} for t, e in est.items()},
                audit={
                    "reason": why,
                    "tasks": full,
                    "fitness": float(np.mean(list(full.values()))),
                    "items": scores,
                }
                if why
                else None,
            )
            full_items += n_all if why else 0
            running.offer(record)
            records.append(record)
            told.append(list(est.values()))
            truth.append(list(full.values()))
        if audit.refit_error is not None and drift(records, since, audit.refit_error, audit.refit_min) is not None:
            if estimator.refit([r.audit["items"] for r in audited(records) if r.audit is not None]):
                since = len(records)
    told_a, truth_a = np.array(told), np.array(truth)
    out = figures(told_a, truth_a)
    best = running.best
    assert best is not None and best.audit is not None
    out["regret"] = 100 * float(truth_a.mean(1).max() - best.audit["fitness"])
    out["cost"] = n_cheap + full_items / len(records)
    return out


def _mean(values: list[float]) -> float:
    """The mean over seeds of what was defined (a rank correlation is not, when every estimate is equal)."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def measure(
    setups: list[Setup], anchors: list[int], seeds: int, calibration: int, audit, log, irt_options: dict | None = None
) -> dict:
    from mergekit_evo.estimate.responses import StaticResponses

    table: dict = {}
    for setup in setups:
        for seed in range(seeds):
            source = StaticResponses(setup.item_ids, setup.dim, seed, setup.inputs, setup.score_point, setup.start)
            for n in anchors:
                for name in ESTIMATORS:
                    estimator, selection = prepared(name, n, calibration, seed, source, irt_options)
                    tasks = list(selection)
                    for set_name, merges in setup.sets.items():
                        est, truth = estimates(estimator, selection, merges), truths(merges, tasks)
                        table.setdefault((setup.name, set_name, n, name), []).append(figures(est, truth))
                        if set_name == "CMA-ES visited":
                            top = top10(est, merges)
                            table.setdefault((setup.name, "CMA-ES top 10", n, name), []).append(
                                figures(est[top], truth[top])
                            )
                    for run in setup.runs:
                        fresh, _ = prepared(name, n, calibration, seed, source, irt_options)  # a refit changes it
                        table.setdefault((setup.name, "audited run", n, name), []).append(
                            replay_audit(fresh, selection, run, seed, audit)
                        )
            log(f"{setup.name}: seed {seed} measured")
    results = {key: {k: _mean([f[k] for f in rows]) for k in rows[0]} for key, rows in table.items()}
    for setup in setups:  # the yardstick: subsample at the audited runs' cost, on the same visited candidates
        if not setup.runs:
            continue
        n_items = int(np.mean([len(v) for v in setup.item_ids.values()]))
        for n in anchors:
            for name in ESTIMATORS:
                k = min(n_items, round(results[(setup.name, "audited run", n, name)]["cost"] / len(setup.item_ids)))
                rows = []
                for seed in range(seeds):
                    source = StaticResponses(
                        setup.item_ids, setup.dim, seed, setup.inputs, setup.score_point, setup.start
                    )
                    estimator, selection = prepared("subsample", k, calibration, seed, source)
                    merges = setup.sets["CMA-ES visited"]
                    rows.append(figures(estimates(estimator, selection, merges), truths(merges, list(selection))))
                results[(setup.name, "equal-cost subsample", n, name)] = {
                    "k": k,
                    **{key: _mean([f[key] for f in rows]) for key in rows[0]},
                }
    return results


def format_tables(results: dict, anchors: list[int], n_items: dict[str, int]) -> str:
    lines = [
        "Error against the full search split (points): mean / max over merges and tasks",
        "",
        "| run | held-out merges | anchors | " + " | ".join(ESTIMATORS) + " |",
        "| --- | --- | --- |" + " --- |" * len(ESTIMATORS),
    ]
    order = list(dict.fromkeys((s, m) for s, m, _, _ in results))  # runs and sets in the order measured
    for setup, set_name in order:
        if set_name == "audited run":
            continue
        for n in anchors:
            cells = [results[(setup, set_name, n, e)] for e in ESTIMATORS]
            lines.append(
                f"| {setup} | {set_name} | {n} | "
                + " | ".join(f"{c['mae']:.2f} / {c['max']:.1f}" for c in cells)
                + " |"
            )
    lines += [
        "",
        "What the optimizer feels, on the candidates CMA-ES visits: rank correlation with the truth / top-1 regret "
        "(points)",
        "",
        "| held-out merges | anchors | " + " | ".join(ESTIMATORS) + " |",
        "| --- | --- |" + " --- |" * len(ESTIMATORS),
    ]
    for setup, set_name in order:
        if not set_name.startswith("CMA-ES"):
            continue
        for n in anchors:
            cells = [results[(setup, set_name, n, e)] for e in ESTIMATORS]
            lines.append(
                f"| {set_name} | {n} | " + " | ".join(f"{c['rank']:.2f} / {c['regret']:.1f}" for c in cells) + " |"
            )
    audited = [k for k in results if k[1] == "audited run"]
    if audited:
        setup = audited[0][0]
        lines += [
            "",
            f"Audited runs replayed along the CMA-ES trajectories ({n_items[setup]} search items), against subsample "
            "at the same cost on the same candidates: items scored per candidate (audits counted), mean error "
            "(points), rank correlation, regret (points) of the best (audited: the accepted best)",
            "",
            "| anchors | estimator | items per candidate | error | rank | regret | subsample k | its error | its rank "
            "| its regret |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for n in anchors:
            for e in ESTIMATORS:
                a, y = results[(setup, "audited run", n, e)], results[(setup, "equal-cost subsample", n, e)]
                lines.append(
                    f"| {n} | {e} | {a['cost']:.1f} | {a['mae']:.2f} | {a['rank']:.2f} | {a['regret']:.1f} "
                    f"| {y['k']} | {y['mae']:.2f} | {y['rank']:.2f} | {y['regret']:.1f} |"
                )
    return "\n".join(lines)


def run(
    anchors: list[int],
    seeds: int,
    n_heldout: int,
    calibration: int,
    runs: int,
    evaluations: int,
    audit: dict,
    log=print,
    irt_options: dict | None = None,
) -> tuple[dict, str]:
    """Every setup scored and measured: (results by (run, set, anchors, estimator), the markdown tables).
    `irt_options` are added to the IRT estimators' options (the suite's reduced form fixes `dim: 1`)."""
    from mergekit_evo.config import AuditConfig
    from mergekit_evo.demo.tiny_world import ensure_world

    world = ensure_world(log=log)
    started = time.perf_counter()
    setups = [two_skill(world, n_heldout, log), cross_skill(world, n_heldout, runs, evaluations, log)]
    log(f"merges scored in {time.perf_counter() - started:.0f} s")
    results = measure(setups, anchors, seeds, calibration, AuditConfig(**audit), log, irt_options)
    n_items = {s.name: int(np.mean([len(v) for v in s.item_ids.values()])) for s in setups}
    return results, format_tables(results, anchors, n_items)


def main(argv: list[str] | None = None) -> None:
    from mergekit_evo.cli.common import quiet_libraries

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anchors", default="20,100", help="anchors (items) per task, comma-separated")
    parser.add_argument("--seeds", type=int, default=3, help="estimator seeds (anchor draws, calibration samples)")
    parser.add_argument("--heldout", type=int, default=32, help="random merges per held-out set")
    parser.add_argument("--calibration", type=int, default=16, help="calibration merges for the IRT fit")
    parser.add_argument("--runs", type=int, default=2, help="CMA-ES runs of the demo's search (seeds 0, 1, ...)")
    parser.add_argument("--evaluations", type=int, default=296, help="candidates per CMA-ES run")
    parser.add_argument("--audit-fraction", type=float, default=0.05, help="audited share in the replayed runs")
    parser.add_argument("--refit-error", type=float, default=0.03, help="refit threshold in the replayed runs")
    parser.add_argument(
        "--calibration-around", choices=["genome", "start"], default="genome", help="the IRT calibration merges"
    )
    args = parser.parse_args(argv)
    quiet_libraries()
    audit = {"fraction": args.audit_fraction, "refit_error": args.refit_error}
    _, tables = run(
        [int(a) for a in args.anchors.split(",")],
        args.seeds,
        args.heldout,
        args.calibration,
        args.runs,
        args.evaluations,
        audit,
        log=lambda line: print(line, flush=True),
        irt_options={"calibration_around": args.calibration_around},
    )
    print(tables)


if __name__ == "__main__":
    main()
