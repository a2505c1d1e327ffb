"""`report.md`: did the evolved merge beat its parents and the plain merges, on items the search never saw?

Every number in it comes from the run directory: inputs.json, baselines.json, validation.json, best_heldout.json
and the candidate records. The table puts search, validation and held-out scores side by side, because a search
score alone flatters the merge it chose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mergekit_evo.config import EvolveConfig
from mergekit_evo.merge.base import reproduce_command
from mergekit_evo.rank.ranking import baseline_label, best_by_generation, guarded, input_label
from mergekit_evo.rank.verdict import verdict_line
from mergekit_evo.store.runs import RunStore

if TYPE_CHECKING:
    from mergekit_evo.store.result import RunResult


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def score_table(result: RunResult, config: EvolveConfig) -> list[str]:
    """Parents, baselines and the chosen merge: fitness and each task on search, validation and held-out items."""
    tasks = [t.name for t in config.tasks]
    splits = [("search", "tasks")]
    if any(t.has_validation for t in config.tasks):
        splits.append(("validation", "validation"))
    splits.append(("held-out", "heldout"))
    header = "| model | fitness (search) | " + " | ".join(f"{t} ({label})" for label, _ in splits for t in tasks) + " |"
    rows = [header, "|" + " --- |" * (2 + len(splits) * len(tasks))]

    def row(name: str, entry: dict) -> str:
        cells = [_cell(entry.get(key, {}).get(t)) for _, key in splits for t in tasks]
        return f"| {name} | {_cell(entry.get('fitness'))} | " + " | ".join(cells) + " |"

    for ref, entry in result.inputs.items():
        rows.append(row(input_label(ref), entry))
    for name, entry in result.baselines.items():
        if "error" in entry:
            rows.append(
                f"| {baseline_label(name)} | failed: {entry['error'][:80]} |" + " |" * (len(splits) * len(tasks))
            )
        else:
            rows.append(row(baseline_label(name), entry))
    best = result.best
    if best is not None:
        rule = "" if config.best_by == "weighted" else f", best by {config.best_by}"
        chosen = {
            "fitness": best.fitness,
            "tasks": {t: best.tasks[t]["estimate"] for t in tasks},
            **{k: v for k, v in (result.best_scores or {}).items() if k in ("validation", "heldout")},
        }
        rows.append(row(f"**chosen merge** (candidate {best.index}{rule})", chosen))
    return rows


def finalists_table(result: RunResult, config: EvolveConfig) -> list[str]:
    """The finalists: their search estimate beside their full search score (a cheap estimator) and validation score."""
    if not result.finalists:
        return []
    rule = "weighted fitness" if config.best_by == "weighted" else config.best_by
    full, validation = "full_fitness" in result.finalists[0], "validation_fitness" in result.finalists[0]
    scored_on = " and ".join(w for w, on in (("all search items", full), ("the validation items", validation)) if on)
    deciding = "validation" if validation else "all search items"
    columns = [("search estimate" if full else "search", "search")]
    columns += [("all search items", "full_fitness")] * full + [("validation", "validation_fitness")] * validation
    lines = [
        f"The top {len(result.finalists)} candidates by search {rule}, scored on {scored_on}; the best on "
        f"{deciding} is the chosen merge:",
        "",
        "| candidate | " + " | ".join(f"{label} {rule}" for label, _ in columns) + " |",
        "|" + " --- |" * (len(columns) + 1),
    ]
    for f in result.finalists:
        mark = " (chosen)" if result.best is not None and f["index"] == result.best.index else ""
        lines.append(f"| {f['index']}{mark} | " + " | ".join(f"{f[key]:.4f}" for _, key in columns) + " |")
    return lines


def comparison_table(result: RunResult) -> list[str]:
    if not result.comparisons:
        return []
    lines = [
        "Held-out items, the chosen merge against each model, paired by item: the mean difference in accuracy "
        "(chosen minus other) with its 95% bootstrap interval, and the exact McNemar p-value (0/1 scores):",
        "",
        "| against | task | items | difference | 95% interval | McNemar p |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for other, by_task in result.comparisons.items():
        for task, c in by_task.items():
            lines.append(
                f"| {other} | {task} | {c['n']} | {c['difference']:+.4f} | [{c['low']:+.4f}, {c['high']:+.4f}] "
                f"| {_p(c['p_mcnemar'])} |"
            )
    return lines


def audit_lines(result: RunResult, config: EvolveConfig) -> list[str]:
    """The estimator audit: its error on the candidates also scored on every search item, and its refits."""
    figures = result.audit
    if not figures or not figures.get("audited"):
        return []
    audit = config.estimator.audit
    assert audit is not None
    rule = "weighted fitness" if config.best_by == "weighted" else config.best_by
    why = [f"a share of {audit.fraction:g}"] * (audit.fraction > 0) + ["every contender for best"] * audit.new_best
    rank = figures["rank_agreement"]
    lines = [
        f"Estimator audit: {figures['audited']} candidates were also scored on every search item "
        f"({' and '.join(why)}). The estimate's error on them: {100 * figures['mean_error']:.2f} points mean, "
        f"{100 * figures['max_error']:.2f} max; rank agreement with the full score ({rule}, Spearman): "
        + ("-" if rank is None else f"{rank:.2f}")
        + f". New bests refused because their full score fell below the best's: {figures['new_best_rejected']}.",
    ]
    if figures.get("refits"):
        lines += [
            "",
            "Refits (error in points, on the candidates audited since the fit before):",
            "",
            "| after generation | audited candidates trained on | judged on | error before | error after |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {e['generation']} | {e['trained_on']} | {e['judged_on']} | {100 * e['error_before']:.2f} "
            f"| {100 * e['error_after']:.2f} |"
            for e in figures["refits"]
        ]
    return lines


def report(result: RunResult, config: EvolveConfig) -> str:
    """The whole report.md."""
    n_ok = sum(r.ok for r in result.records)
    lines = [f"# mergekit-evo run {result.run_dir.name}", ""]
    said = verdict_line(
        {**(result.best_scores or {}), "comparisons": result.comparisons}, result.inputs, result.baselines
    )
    if said:
        lines += [f"**{said}**", ""]
    lines += [
        f"{len(result.records)} candidates scored ({n_ok} ok, {len(result.records) - n_ok} failed), "
        f"estimator `{config.estimator.name}`, optimizer `{config.optimizer.name}`.",
        "",
    ]
    if result.warning:
        lines += [f"**{result.warning}**", ""]
    lines += score_table(result, config)
    for block in (finalists_table(result, config), audit_lines(result, config), comparison_table(result)):
        if block:
            lines += [""] + block
    progress = best_by_generation(result.records, config.best_by, guarded(config))
    if progress:
        rule = "weighted fitness" if config.best_by == "weighted" else config.best_by
        lines += ["", f"Best {rule} after each generation: " + ", ".join(f"{f:.4f}" for f in progress)]
    if result.pareto:
        names = config.objective_names()
        size = f"{len(result.pareto)} candidates" if len(result.pareto) > 1 else "1 candidate"
        lines += [
            "",
            f"Pareto front ({size} no other beats on every objective; recipes in `pareto/`):",
            "",
            "| candidate | " + " | ".join(names) + " | weighted fitness |",
            "|" + " --- |" * (len(names) + 2),
        ]
        lines += [
            f"| {r.index} | " + " | ".join(f"{v:.4f}" for v in r.objectives or []) + f" | {r.fitness:.4f} |"
            for r in result.pareto
        ]
    best = result.best
    if best is not None:
        lines += [
            "",
            "Chosen recipe (`best.yaml`, runs unchanged with `mergekit-yaml best.yaml OUT`; "
            f"`{reproduce_command(best.seed, best.device, RunStore.BEST)}` gives exactly the scored tensors):",
            "",
            "```yaml",
            best.merge_yaml.rstrip(),
            "```",
        ]
    return "\n".join(lines) + "\n"
