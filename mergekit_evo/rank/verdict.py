"""One line that says whether the evolution paid off: the chosen merge against the best parent and the best plain
merge, on held-out items, with the interval, the p-value and whether the gain is significant.

It reads what the run folder keeps (inputs.json, baselines.json, best_heldout.json with its paired comparisons), so
report.md, report.html and `mergekit-evo demo` say the same thing. A gain is called significant when the paired
test says so at 0.05: McNemar's exact p for 0/1 scores, else the 95% bootstrap interval lying above zero.
"""

from __future__ import annotations

from mergekit_evo.rank.ranking import baseline_label, input_label

LEVEL = 0.05


def _p(p: float) -> str:
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.4f}"


def _against(kind: str, label: str, theirs: float, c: dict) -> str:
    p = c.get("p_mcnemar")
    significant = (p < LEVEL) if p is not None else c["low"] > 0
    if c["difference"] <= 0:
        word = "no gain"
    else:
        word = "significant" if significant else "not significant"
    test = f", McNemar {_p(p)}" if p is not None else ""
    return (
        f"{c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] over the {kind}, {label} ({theirs:.3f}){test}: "
        f"{word}"
    )


def verdict_line(best_heldout: dict | None, inputs: dict[str, dict], baselines: dict[str, dict]) -> str | None:
    """The verdict, one line, or None when the run has no held-out comparison (no held-out items, or not ended)."""
    if not best_heldout or not best_heldout.get("comparisons") or not best_heldout.get("heldout"):
        return None
    comparisons = best_heldout["comparisons"]
    groups = {
        "best parent": {input_label(ref): e.get("heldout") or {} for ref, e in inputs.items()},
        "best plain merge": {baseline_label(name): b.get("heldout") or {} for name, b in baselines.items()},
    }
    parts = []
    for task, mine in best_heldout["heldout"].items():
        said = [f"held-out {task}: the evolved merge {mine:.3f}"]
        for kind, group in groups.items():
            scored = {label: h[task] for label, h in group.items() if task in h and task in comparisons.get(label, {})}
            if scored:
                label, theirs = max(scored.items(), key=lambda kv: kv[1])
                said.append(_against(kind, label.rsplit(" (", 1)[0], theirs, comparisons[label][task]))
        parts.append("; ".join(said))
    return "Verdict: " + ". ".join(parts) + "."
