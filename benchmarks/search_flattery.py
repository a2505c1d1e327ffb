"""How much the demo's search flatters its pick, and how much of that is the measurement's own noise (issue 30).

The target "the chosen merge's held-out accuracy at most 0.05 below its search accuracy" compares two measurements
on finite item sets. This benchmark reads the finished runs of `benchmarks/cross_skill.py` and prints three tables:

1. The noise: the same difference for the models nobody chose (the parents and the plain merges), beside the
   evolved merge's, and what they mean for the target on every seed at once.
2. Where the evolved merge's lead comes from: the search's last quarter of generations, every candidate scored on
   validation items (never chosen on them), against its search score.
3. Two ways of choosing the final merge, compared on validation items only: the product's (the top 5 by search
   score, the best of them on validation) and every candidate that led the search when it was found. Each rule
   chooses on one random half of the validation items and is measured on the other half, 200 times.

    python benchmarks/cross_skill.py && python benchmarks/search_flattery.py

It writes nothing into the runs: the validation scores it computes are kept in <runs>/search-flattery/seed-N.json,
so a second call scores nothing. About 40 s a seed on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from mergekit_evo.cli.common import quiet_libraries
from mergekit_evo.rank import ranking
from mergekit_evo.run.context import RunContext
from mergekit_evo.run.finale import Selection, finalists
from mergekit_evo.run.fitness import Fitness
from mergekit_evo.store.runs import CandidateRecord, RunStore

TASK = "math_b"
TARGET = 0.05  # the chosen merge's search accuracy at most this far above its held-out accuracy
SPLITS = 200  # random halvings of the validation items for the rule comparison


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def chance_all_met(bias: float, sd: float, seeds: int) -> float:
    """The chance that search - held-out stays within TARGET on every one of `seeds` seeds, when each seed's
    difference is normal with mean `bias` and standard deviation `sd`."""
    return normal_cdf((TARGET - bias) / sd) ** seeds


def binomial_sd(accuracy: float, n_search: int, n_heldout: int) -> float:
    """The standard deviation of search accuracy minus held-out accuracy of one model, from item sampling alone."""
    variance = accuracy * (1 - accuracy)
    return math.sqrt(variance / n_search + variance / n_heldout)


def leaders(records: list[CandidateRecord]) -> list[CandidateRecord]:
    """Every candidate that led the search when it was scored, once each, by the run's own rule of the leader."""
    distinct = {best.index: best for best in ranking.leaders(records) if best is not None}
    return list(distinct.values())


def late_population(records: list[CandidateRecord]) -> list[CandidateRecord]:
    last = max(r.generation for r in records)
    return [r for r in records if r.generation > last * 3 // 4]


class SeedRun:
    """One finished cross-skill run, read without writing, and the validation scores of the candidates asked for."""

    def __init__(self, run_dir: Path, cache: Path):
        self.store, config = RunStore.open(run_dir)
        self.ctx = RunContext.build(config, self.store, log=lambda _: None)
        self.fitness = Fitness(self.ctx)
        self.records = [r for r in self.store.records() if r.ok]
        self.inputs = self.store.read_json(RunStore.INPUTS)
        self.baselines = self.store.read_json(RunStore.BASELINES)
        self.best = self.store.read_json(RunStore.BEST_HELDOUT)
        if not (self.inputs and self.baselines and self.best):
            raise SystemExit(f"{run_dir}: not a finished run; run benchmarks/cross_skill.py to its end first")
        self.cache = cache
        self.validation: dict[int, np.ndarray] = {}
        if cache.exists():
            self.validation = {int(k): np.array(v) for k, v in json.loads(cache.read_text()).items()}

    def score(self, records: list[CandidateRecord]) -> None:
        for record in records:
            if record.index in self.validation:
                continue
            recipe = self.ctx.genome.to_merge_config(np.asarray(record.genome))
            with self.ctx.merger.merged(recipe, seed=record.seed) as model:
                items = self.fitness.full_scores(model, ("validation",))["validation"][TASK]
            self.validation[record.index] = np.array(items)
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        self.cache.write_text(json.dumps({str(k): v.tolist() for k, v in self.validation.items()}))

    def unselected(self) -> dict[str, dict]:
        """The parents and the plain merges the chosen merge is held against, each distinct model once (the start
        point is often plain task arithmetic under another name): models scored on every split and chosen by nobody."""
        models: dict[str, dict] = {}
        seen: set[str] = set()
        for label, entry in ranking.references(self.inputs, self.baselines).items():
            same = json.dumps(entry["items"], sort_keys=True)
            if same not in seen:
                seen.add(same)
                models[label] = entry
        return models


def noise_table(runs: dict[int, SeedRun]) -> list[str]:
    names = ", ".join(name.split(" (")[0] for name in next(iter(runs.values())).unselected())
    lines = [
        f"| seed | search - held-out, models nobody chose ({names}) | evolved merge |",
        "| --- | --- | --- |",
    ]
    unselected, evolved, sds = [], [], []
    for seed, run in runs.items():
        diffs = [e["tasks"][TASK] - e["heldout"][TASK] for e in run.unselected().values()]
        chosen = ranking.chosen(run.records, final_index=run.best["index"])
        assert chosen is not None
        search = chosen.tasks[TASK]["estimate"]
        drop = search - run.best["heldout"][TASK]
        n_search, n_heldout = len(run.ctx.tasks[TASK].item_ids), len(run.best["items"]["heldout"][TASK])
        sds.append(binomial_sd(search, n_search, n_heldout))
        unselected += diffs
        evolved.append(drop)
        lines.append(f"| {seed} | {', '.join(f'{d:+.3f}' for d in diffs)} | {drop:+.3f} |")
    sd_unselected = float(np.std(unselected, ddof=1))
    sd = float(np.mean(sds))
    bias = float(np.mean(evolved))
    n = len(runs)
    lines += [
        "",
        f"- models nobody chose: mean {np.mean(unselected):+.3f}, standard deviation {sd_unselected:.3f} "
        f"({len(unselected)} differences); item sampling alone at the evolved merges' accuracy: {sd:.3f}",
        f"- evolved merges: mean {bias:+.3f} (the search's bias), {sum(d <= TARGET for d in evolved)} of {n} within "
        f"{TARGET}",
        f"- chance that all {n} seeds stay within {TARGET}: {chance_all_met(0.0, sd, n):.2f} for a search without "
        f"bias, {chance_all_met(bias, sd, n):.2f} at the measured bias",
    ]
    return lines


def population_table(runs: dict[int, SeedRun]) -> list[str]:
    lines = [
        "| seed | candidates | generations | search, mean | validation, mean | search - validation |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for seed, run in runs.items():
        late = late_population(run.records)
        search = np.mean([r.fitness for r in late])
        valid = np.mean([run.validation[r.index].mean() for r in late])
        gens = f"{min(r.generation for r in late)}-{max(r.generation for r in late)}"
        lines.append(f"| {seed} | {len(late)} | {gens} | {search:.3f} | {valid:.3f} | {search - valid:+.3f} |")
    return lines


def split_half(run: SeedRun, pool: list[CandidateRecord], rng: np.random.Generator) -> tuple[float, float]:
    """Choose the best of `pool` on one half of the validation items, measure it on the other: the pick's search
    score minus that, and that minus the best parent's score on the same half; means over SPLITS halvings."""
    parents = [np.array(e["items"]["validation"][TASK]) for e in run.inputs.values()]
    n = len(parents[0])
    drops, margins = [], []
    for _ in range(SPLITS):
        order = rng.permutation(n)
        for pick_on, measure_on in ((order[: n // 2], order[n // 2 :]), (order[n // 2 :], order[: n // 2])):
            pick = max(pool, key=lambda r: (run.validation[r.index][pick_on].mean(), r.fitness, -r.index))
            measured = run.validation[pick.index][measure_on].mean()
            drops.append(pick.fitness - measured)
            margins.append(measured - max(p[measure_on].mean() for p in parents))
    return float(np.mean(drops)), float(np.mean(margins))


def rules_table(runs: dict[int, SeedRun], pools: dict[str, dict[int, list[CandidateRecord]]]) -> list[str]:
    lines = [
        "| seed | rule | candidates | search - other half | other half - best parent |",
        "| --- | --- | --- | --- | --- |",
    ]
    for seed, run in runs.items():
        rng = np.random.default_rng(seed)
        for rule, by_seed in pools.items():
            drop, margin = split_half(run, by_seed[seed], rng)
            lines.append(f"| {seed} | {rule} | {len(by_seed[seed])} | {drop:+.3f} | {margin:+.3f} |")
    return lines


def measure(runs_dir: Path, seeds: list[int], log=print) -> list[str]:
    """The three tables, from cross_skill.py's finished runs under `runs_dir` (scores kept beside them)."""
    runs: dict[int, SeedRun] = {}
    pools: dict[str, dict[int, list[CandidateRecord]]] = {"top 5 by search (the product)": {}, "every leader": {}}
    selection = Selection(by="weighted", guard=False, weights={TASK: 1.0}, top_k=5, cheap=False, validation=True)
    for seed in seeds:
        log(f"seed {seed}: scoring candidates on validation items ...")
        run = SeedRun(runs_dir / f"seed-{seed}", runs_dir / "search-flattery" / f"seed-{seed}.json")
        pools["top 5 by search (the product)"][seed] = finalists(run.records, selection)
        pools["every leader"][seed] = leaders(run.records)
        run.score([r for pool in pools.values() for r in pool[seed]] + late_population(run.records))
        runs[seed] = run
    return [
        "1. Search accuracy minus held-out accuracy on math_b",
        "",
        *noise_table(runs),
        "",
        "2. The search's last quarter of generations, every candidate on validation items",
        "",
        *population_table(runs),
        "",
        f"3. Choosing the final merge, on validation items only ({SPLITS} random halvings)",
        "",
        *rules_table(runs, pools),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--runs", type=Path, default=Path("runs/cross-skill"), help="cross_skill.py's --runs")
    args = parser.parse_args()
    quiet_libraries()
    lines = measure(args.runs, args.seeds, log=lambda line: print(line, flush=True))
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
