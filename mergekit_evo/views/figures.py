"""The plots of a run, as plotly figures built from a `RunView`: the report and the dashboard draw the same ones.

Each function returns None when the run has nothing to show for it yet (no held-out scores before the end, no Pareto
front for one objective), so a live run's page grows as its files appear.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mergekit_evo.rank.ranking import best_so_far as ranking_best_so_far
from mergekit_evo.rank.ranking import guarded, references
from mergekit_evo.views.run_view import RunView

LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.2))
SPLITS = (("search", "tasks"), ("validation", "validation"), ("held-out", "heldout"))


def _others(view: RunView) -> dict[str, dict]:
    """The parents and the plain merges, by the label the report gives them, with their scores."""
    return references(view.inputs, view.baselines)


def best_so_far(view: RunView) -> list[float | None]:
    """The leader's score after each record, in recorded order, by the run's own rule (`ranking`)."""
    return ranking_best_so_far(view.records, view.config.best_by, guarded(view.config))


def fitness(view: RunView) -> go.Figure | None:
    """Every candidate's fitness in the order it was recorded, the best so far, failures, parents and baselines."""
    if not view.records:
        return None
    fig = go.Figure()
    order = {r.index: n for n, r in enumerate(view.records)}
    ok = view.ok
    fig.add_trace(
        go.Scatter(
            x=[order[r.index] for r in ok],
            y=[r.fitness for r in ok],
            mode="markers",
            name="candidate",
            marker=dict(
                size=6,
                color=[r.generation for r in ok],
                colorscale="Viridis",
                showscale=True,
                colorbar=dict(title="generation"),
            ),
            text=[f"candidate {r.index}, generation {r.generation}" for r in ok],
            hovertemplate="%{text}<br>fitness %{y:.4f}<extra></extra>",
        )
    )
    running = best_so_far(view)
    fig.add_trace(
        go.Scatter(
            x=list(range(len(running))),
            y=running,
            mode="lines",
            name="best so far" if view.config.best_by == "weighted" else f"best so far ({view.config.best_by})",
            line=dict(color="black", width=2),
        )
    )
    failed = [r for r in view.records if not r.ok]
    if failed:
        floor = min([r.fitness or 0.0 for r in ok] or [0.0])
        fig.add_trace(
            go.Scatter(
                x=[order[r.index] for r in failed],
                y=[floor] * len(failed),
                mode="markers",
                name="failed",
                marker=dict(symbol="x", size=9, color="crimson"),
                text=[f"candidate {r.index}: {(r.error or '')[:120]}" for r in failed],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    # parents and plain merges as level lines named in the legend: text on the lines overlapped wherever two of
    # them score alike (a start point that is itself a plain merge always does)
    span = [0, max(len(view.records) - 1, 1)]
    for n, (label, entry) in enumerate(_others(view).items()):
        if entry.get("fitness") is None:
            continue
        fig.add_trace(
            go.Scatter(
                x=span,
                y=[entry["fitness"]] * 2,
                mode="lines",
                name=label,
                line=dict(dash="dash" if label.endswith("(input)") else "dot", width=1, color=_color(n)),
                hovertemplate=f"{html.escape(label)}<br>fitness %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Fitness of every candidate (search items)",
        xaxis_title="evaluation",
        yaxis_title="weighted fitness",
        **LAYOUT,
    )
    return fig


def _color(n: int) -> str:
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
    return palette[n % len(palette)]


def _interval(scores: list[float] | None) -> float | None:
    """Half the width of the mean's 95% interval (normal approximation) from per-item scores."""
    if not scores or len(scores) < 2:
        return None
    return float(1.96 * np.std(scores, ddof=1) / math.sqrt(len(scores)))


def task_scores(view: RunView) -> go.Figure | None:
    """The chosen merge against parents and baselines, task by task, on each split the run has scored."""
    chosen = view.chosen
    if chosen is None or not view.inputs:
        return None
    tasks = [t.name for t in view.config.tasks]
    mine = {"tasks": {t: chosen.tasks.get(t, {}).get("estimate") for t in tasks}}
    if view.best_heldout and view.best_heldout.get("index") == chosen.index:
        mine.update({k: view.best_heldout.get(k, {}) for k in ("validation", "heldout", "items")})
    models = {**_others(view), f"chosen merge (candidate {chosen.index})": mine}
    splits = [(label, key) for label, key in SPLITS if any(e.get(key) for e in models.values())]
    fig = make_subplots(
        rows=1, cols=len(splits), subplot_titles=[f"{label} items" for label, _ in splits], shared_yaxes=True
    )
    for col, (_, key) in enumerate(splits, start=1):
        for n, (label, entry) in enumerate(models.items()):
            values = [(entry.get(key) or {}).get(t) for t in tasks]
            errors = [_interval((entry.get("items") or {}).get(key, {}).get(t)) for t in tasks]
            fig.add_trace(
                go.Bar(
                    x=tasks,
                    y=values,
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    marker_color="black" if label.startswith("chosen") else _color(n),
                    error_y=dict(type="data", array=[e or 0 for e in errors], visible=any(errors)),
                    hovertemplate=f"{label}<br>%{{x}}: %{{y:.4f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_layout(
        title="Per-task accuracy: the chosen merge against parents and plain merges "
        "(bars: 95% intervals where per-item scores are kept)",
        barmode="group",
        **LAYOUT,
    )
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    return fig


def _layout_of(view: RunView, genes: list[str]) -> list[tuple[str, str, str]] | None:
    """(parameter, layer group, model) for each gene name, as the run described its genome (genome.json); None for a
    run that did not (an earlier version's), whose genes are then drawn by name."""
    layout = {g["name"]: g for g in view.genome_layout or []}
    if any(name not in layout for name in genes):
        return None
    return [(layout[n]["parameter"], layout[n]["group"], layout[n]["model"]) for n in genes]


def genome(view: RunView) -> go.Figure | None:
    """The chosen genome as heat maps: layer group x model, one panel per evolved parameter."""
    chosen = view.chosen
    if chosen is None or not chosen.genes:
        return None
    names = list(chosen.genes)
    layout = _layout_of(view, names) or [("gene", name, "value") for name in names]
    parameters = list(dict.fromkeys(p for p, _, _ in layout))
    fig = make_subplots(rows=1, cols=len(parameters), subplot_titles=parameters, horizontal_spacing=0.12)
    for col, parameter in enumerate(parameters, start=1):
        cells = [(group, model, chosen.genes[name]) for name, (p, group, model) in zip(names, layout) if p == parameter]
        rows = list(dict.fromkeys(g for g, _, _ in cells))
        cols = list(dict.fromkeys(m for _, m, _ in cells))
        z: list[list[float | None]] = [[None] * len(cols) for _ in rows]
        for group, model, value in cells:
            z[rows.index(group)][cols.index(model)] = value
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=cols,
                y=rows,
                colorscale="Blues",
                showscale=col == len(parameters),
                texttemplate="%{z:.3f}",
                hovertemplate=f"{parameter}<br>%{{y}}, %{{x}}: %{{z:.4f}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(title=f"The chosen genome (candidate {chosen.index})", **LAYOUT)
    return fig


def trajectories(view: RunView) -> go.Figure | None:
    """Each gene's mean over each generation's scored candidates, one panel per parameter: where the search went
    and what it settled on (single candidates would draw a thicket for a per-layer genome)."""
    ok = view.ok
    if not ok or not ok[0].genes:
        return None
    names = list(ok[0].genes)
    layout = _layout_of(view, names) or [("gene", name, "") for name in names]
    parameters = list(dict.fromkeys(p for p, _, _ in layout))
    generations = sorted({r.generation for r in ok})
    members = {g: [r for r in ok if r.generation == g] for g in generations}
    fig = make_subplots(rows=len(parameters), cols=1, subplot_titles=parameters, shared_xaxes=True)
    for row, parameter in enumerate(parameters, start=1):
        for name, (p, group, model) in zip(names, layout):
            if p != parameter:
                continue
            label = " ".join(x for x in (group, model) if x) or name
            fig.add_trace(
                go.Scatter(
                    x=generations,
                    y=[float(np.mean([r.genes[name] for r in members[g]])) for g in generations],
                    mode="lines+markers",
                    marker=dict(size=4),
                    line=dict(width=1.5),
                    name=f"{parameter}: {label}",
                    hovertemplate=f"{name}<br>generation %{{x}}: mean %{{y:.4f}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
    fig.update_layout(title="Each gene's mean over a generation", height=280 + 220 * len(parameters), **LAYOUT)
    fig.update_xaxes(title_text="generation", row=len(parameters), col=1)
    return fig


def pareto(view: RunView) -> go.Figure | None:
    """Multi-objective runs: every candidate's objectives, with the Pareto front drawn and labelled."""
    if view.config.objectives != "separate":
        return None
    points = {r.index: list(r.objectives) for r in view.ok if r.objectives}
    if not points:
        return None
    names = view.config.objective_names()
    front = sorted((r.index for r in view.pareto), key=lambda i: points[i][0])
    ok = list(points)
    if len(names) == 2:
        fig = go.Figure()
        fig.add_trace(
            go.Scatter(
                x=[points[i][0] for i in ok],
                y=[points[i][1] for i in ok],
                mode="markers",
                name="candidate",
                marker=dict(size=6, color="#9bb8d3"),
                text=[f"candidate {i}" for i in ok],
                hovertemplate="%{text}<br>%{x:.4f}, %{y:.4f}<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[points[i][0] for i in front],
                y=[points[i][1] for i in front],
                mode="lines+markers+text",
                name="Pareto front",
                line=dict(color="crimson"),
                marker=dict(size=9, color="crimson"),
                text=[f"#{i}" for i in front],
                textposition="top right",
                hovertemplate="candidate %{text}<extra></extra>",
            )
        )
        fig.update_layout(xaxis_title=names[0], yaxis_title=names[1])
    else:
        on_front = set(front)
        fig = go.Figure(
            go.Splom(
                dimensions=[dict(label=n, values=[points[i][k] for i in ok]) for k, n in enumerate(names)],
                marker=dict(size=6, color=["crimson" if i in on_front else "#9bb8d3" for i in ok]),
                text=[f"candidate {i}" + (" (front)" if i in on_front else "") for i in ok],
                diagonal_visible=False,
            )
        )
    fig.update_layout(title=f"Objectives of every candidate; the Pareto front ({len(front)}) in red", **LAYOUT)
    return fig


def estimator_points(view: RunView) -> dict[str, list[tuple[float, float, str]]]:
    """(estimate, full score, label) pairs by where they come from: audited candidates and finalists (the estimator
    never saw their full scores), and the calibration merges an estimator that learns was fit on."""
    by_index = {r.index: r for r in view.records}
    tasks = [t.name for t in view.config.tasks]
    series: dict[str, list[tuple[float, float, str]]] = {}
    for r in view.ok:
        if r.audit is not None:
            for t in tasks:
                series.setdefault("audited candidates", []).append(
                    (r.tasks[t]["estimate"], r.audit["tasks"][t], f"candidate {r.index}, {t}")
                )
    for index, scores in (view.full_search or {}).items():
        finalist = by_index.get(int(index))
        if finalist is not None and finalist.ok:
            for t in tasks:
                if t in scores:
                    series.setdefault("finalists", []).append(
                        (finalist.tasks[t]["estimate"], float(np.mean(scores[t])), f"candidate {finalist.index}, {t}")
                    )
    calibration = _calibration_points(view)
    if calibration:
        series["calibration merges (fit on them)"] = calibration
    return series


def _calibration_points(view: RunView) -> list[tuple[float, float, str]]:
    """The learned estimator's estimate of each calibration merge from its selected items, against its full score,
    as the run wrote them (calibration.json): no plugin is loaded to draw them."""
    return [(float(estimate), float(truth), str(label)) for estimate, truth, label in view.calibration or []]


def estimator(view: RunView) -> go.Figure | None:
    """A cheap estimator's estimate against the full score, with its mean error per source of points."""
    if view.config.estimator.name == "full":
        return None
    series = estimator_points(view)
    if not series:
        return None
    fig = go.Figure()
    low, high = 1.0, 0.0
    for n, (label, points) in enumerate(series.items()):
        estimates, fulls, texts = zip(*points)
        error = 100 * float(np.mean(np.abs(np.array(estimates) - np.array(fulls))))
        low, high = min(low, *estimates, *fulls), max(high, *estimates, *fulls)
        fig.add_trace(
            go.Scatter(
                x=fulls,
                y=estimates,
                mode="markers",
                name=f"{label}: error {error:.2f} points",
                marker=dict(size=7, color=_color(n)),
                text=list(texts),
                hovertemplate="%{text}<br>full %{x:.4f}, estimate %{y:.4f}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[low, high],
            y=[low, high],
            mode="lines",
            name="estimate = full score",
            line=dict(color="gray", dash="dash"),
        )
    )
    fig.update_layout(
        title=f"Estimator {view.config.estimator.name}: estimate against the score on every search item "
        "(mean absolute error in points)",
        xaxis_title="full score",
        yaxis_title="estimate",
        **LAYOUT,
    )
    return fig


FIGURES: dict[str, Any] = {
    "fitness": fitness,
    "tasks": task_scores,
    "genome": genome,
    "trajectories": trajectories,
    "pareto": pareto,
    "estimator": estimator,
}
