"""`report.html`: the run's plots in one self-contained page (plotly.js inlined: it opens offline, from any folder).

The page is the dashboard's page too: both render a *state* (a summary and a list of views, each a plotly figure or a
piece of HTML) with the same script. The report embeds one state; the dashboard fetches a new one whenever the run
directory changes.
"""

from __future__ import annotations

import html
import json
from typing import Any

import plotly
import plotly.offline

from mergekit_evo.merge.base import reproduce_command
from mergekit_evo.rank.verdict import verdict_line
from mergekit_evo.store.runs import RunStore
from mergekit_evo.views.figures import FIGURES
from mergekit_evo.views.run_view import RunView

TITLES = {
    "fitness": "Search progress",
    "tasks": "The chosen merge against its parents and the plain merges",
    "genome": "The chosen genome",
    "trajectories": "Gene trajectories",
    "pareto": "Pareto front",
    "estimator": "Is the cheap fitness right?",
}


def summary(view: RunView) -> str:
    """The page's heading: what ran, how far it got, and whether it is still running."""
    failed = len(view.records) - len(view.ok)
    best = view.chosen
    lines = [
        f"<h1>mergekit-evo run {html.escape(view.name)}</h1>",
        f'<p id="status">Status: <b>{html.escape(view.status)}</b>. '
        f'<span id="count">{len(view.records)} candidates</span> ({len(view.ok)} ok, {failed} failed), '
        f"method <code>{html.escape(', '.join(view.config.methods()))}</code>, "
        f"optimizer <code>{html.escape(view.config.optimizer.name)}</code>, "
        f"estimator <code>{html.escape(view.config.estimator.name)}</code>.",
    ]
    if best is not None:
        rule = "chosen merge" if view.finished else "best so far"
        lines.append(f" The {rule}: candidate {best.index}, fitness {best.fitness:.4f}.")
    if view.unreadable:
        lines.append(f" {view.unreadable} unreadable lines of candidates.jsonl are skipped (they stay in the file).")
    said = verdict_line(view.best_heldout, view.inputs, view.baselines)
    if said:  # the page opens with it, right under the heading
        lines.insert(1, f'<p id="verdict"><b>{html.escape(said)}</b></p>')
    return "".join(lines) + "</p>"


def recipe(view: RunView) -> str | None:
    best = view.chosen
    if best is None:
        return None
    command = reproduce_command(best.seed, best.device, RunStore.BEST)
    return (
        f"<p>The {'chosen' if view.finished else 'best-so-far'} recipe, a plain mergekit YAML "
        f"(<code>{RunStore.BEST}</code>). Rebuild it with <code>mergekit-yaml {RunStore.BEST} OUT</code>; "
        f"<code>{html.escape(command)}</code> gives exactly the scored tensors.</p>"
        f'<pre class="yaml">{html.escape(best.merge_yaml)}</pre>'
    )


def state(view: RunView) -> dict[str, Any]:
    """What the page shows of the run now: every view it can draw yet, in a fixed order."""
    views: list[dict[str, Any]] = []
    for key, build in FIGURES.items():
        figure = build(view)
        if figure is not None:
            views.append({"id": key, "title": TITLES[key], "figure": figure.to_plotly_json()})
    text = recipe(view)
    if text is not None:
        views.append({"id": "recipe", "title": "The recipe", "html": text})
    if view.report_md:
        views.append(
            {
                "id": "report-md",
                "title": "report.md",
                "html": f"<details><summary>The tables of report.md</summary>"
                f"<pre>{html.escape(view.report_md)}</pre></details>",
            }
        )
    return {"version": view.version, "summary": summary(view), "views": views}


def to_json(data: Any) -> str:
    """JSON that may sit inside a <script> element (plotly's encoder takes numpy values)."""
    return json.dumps(data, cls=plotly.utils.PlotlyJSONEncoder).replace("</", "<\\/")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
code { background: #f6f8fa; padding: 0 0.2em; } .plot { min-height: 420px; }
nav a { margin-right: 1em; } table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; text-align: left; }
"""

# Draws a state: sections are created once and kept in the state's order; Plotly.react redraws a figure in place.
RENDER = """
function render(state) {
  document.getElementById('summary').innerHTML = state.summary;
  const main = document.getElementById('views');
  for (const v of state.views) {
    let section = document.getElementById('view-' + v.id);
    if (!section) {
      section = document.createElement('section');
      section.id = 'view-' + v.id;
      section.innerHTML = '<h2></h2><div class="body"></div>';
      if (v.figure) section.querySelector('.body').className = 'body plot';
    }
    main.appendChild(section);
    section.querySelector('h2').textContent = v.title;
    const body = section.querySelector('.body');
    if (v.figure) {
      Plotly.react(body, v.figure.data, v.figure.layout, {responsive: true, displaylogo: false});
    } else {
      body.innerHTML = v.html;
    }
  }
  document.body.dataset.version = state.version;
}
"""

POLL = """
async function poll() {
  try {
    const response = await fetch(STATE_URL + '?since=' + encodeURIComponent(document.body.dataset.version || ''));
    if (response.status === 200) render(await response.json());
  } catch (e) { /* the server may be restarting; the next poll tries again */ }
  setTimeout(poll, POLL_MS);
}
poll();
"""


def page(
    title: str,
    *,
    state_json: str | None = None,
    state_url: str | None = None,
    plotly_src: str | None = None,
    poll_ms: int = 2000,
    nav: str = "",
) -> str:
    """The page: with `state_json` a static report (plotly.js inlined), with `state_url` a live page that polls it."""
    if plotly_src is None:
        plotly_js = f"<script>{plotly.offline.get_plotlyjs()}</script>"
    else:
        plotly_js = f'<script src="{html.escape(plotly_src)}"></script>'
    if state_json is not None:
        start = (
            f'<script type="application/json" id="state">{state_json}</script>'
            "<script>render(JSON.parse(document.getElementById('state').textContent));</script>"
        )
    else:
        start = f"<script>const STATE_URL = {json.dumps(state_url)}; const POLL_MS = {int(poll_ms)};{POLL}</script>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>{plotly_js}<script>{RENDER}</script></head>"
        f'<body>{nav}<div id="summary"></div><main id="views"></main>{start}</body></html>\n'
    )


def report_html(view: RunView) -> str:
    """The whole report.html for the run as it is now."""
    return page(f"mergekit-evo run {view.name}", state_json=to_json(state(view)))
