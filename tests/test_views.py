"""report.html, `mergekit-evo report`, the dashboard and observers, over one real multi-objective run.

The run has every view a report can draw: two objectives (a Pareto front), a cheap estimator with an audit (estimate
against full score), parents and baselines. It also carries an observer and a hook implementation that raise, which
must cost the run nothing but one line each.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import plotly.offline
import pytest

from helpers import registered
from mergekit_evo import Observer, hookimpl
from mergekit_evo.cli import main
from mergekit_evo.config import parse_config
from mergekit_evo.demo.configs import two_skill_config
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.run.evolution import Evolution
from mergekit_evo.store.runs import RunStore
from mergekit_evo.views.dashboard import Dashboard, make_server
from mergekit_evo.views.figures import estimator_points, fitness, genome, pareto, task_scores, trajectories
from mergekit_evo.views.run_view import load_view

pytestmark = pytest.mark.slow


class RaisingObserver(Observer):
    """An observer whose every call fails, as a tracker without its network would."""

    calls = 0

    def on_candidate_scored(self, record):
        RaisingObserver.calls += 1
        raise ConnectionError("tracker unreachable")

    def on_generation_end(self, generation, records):
        raise ConnectionError("tracker unreachable")


class RaisingPlugin:
    @hookimpl
    def register_observers(self, register):
        register("raising-test", RaisingObserver)

    @hookimpl
    def on_candidate_scored(self, record):
        raise ValueError(f"cannot handle candidate {record.index}")


@pytest.fixture(scope="module")
def run(micro_world, tmp_path_factory):
    data = two_skill_config(micro_world, 8, optimizer="nsga2", population=4, objectives="separate")
    data["estimator"] = {"name": "subsample", "options": {"k": 12}, "audit": {"fraction": 0.5}}
    data["selection"] = {"top_k": 2}
    data["observers"] = ["raising-test"]
    lines: list[str] = []
    run_dir = tmp_path_factory.mktemp("views") / "run"
    with registered(RaisingPlugin(), "raising-test-plugin"):
        Evolution.start(parse_config(data, micro_world), run_dir, log=lines.append).run(progress=False)
    return run_dir, lines


def test_an_observer_or_hook_that_raises_is_reported_once_and_the_run_goes_on(run):
    run_dir, lines = run
    assert len(RunStore(run_dir).records()) == 8 and (run_dir / "report.html").is_file()
    assert RaisingObserver.calls == 8  # called for every candidate, though each call failed
    first = [line for line in lines if line.startswith("observer raising-test failed in")]
    assert first == [
        "observer raising-test failed in on_candidate_scored (ConnectionError: tracker unreachable); the run goes "
        "on, and its further errors are counted, not shown"
    ]
    assert len([line for line in lines if line.startswith("plugin raising-test-plugin failed in")]) == 1
    assert "observer raising-test failed 10 times in this run" in lines  # 8 candidates and 2 generations
    assert "plugin raising-test-plugin failed 8 times in this run" in lines


def test_an_unknown_observer_or_a_bad_option_is_refused_before_the_run_starts(micro_world, tmp_path):
    data = two_skill_config(micro_world, 2, population=2)
    data["observers"] = ["wandbb"]
    with pytest.raises(
        UserError, match=r"^observers\[0\]: no observer named 'wandbb' is installed.*did you mean wandb"
    ):
        Evolution.start(parse_config(data, micro_world), tmp_path / "a", log=lambda _: None)
    data["observers"] = [{"name": "wandb", "options": {"projekt": "x"}}]
    with pytest.raises(UserError, match=r"^observers\[0\]\.options\.projekt: unknown option; valid options: project"):
        Evolution.start(parse_config(data, micro_world), tmp_path / "b", log=lambda _: None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def leader_scores(records):
    """The best-so-far curve replayed from the documented rule: a candidate whose estimate beats every earlier
    contender's leads unless the audit scored it fully below the leader's full score; a leader counts by its full
    score where audited."""
    bar = lead = None
    out = []
    for r in records:
        if r.ok:
            full = r.audit["fitness"] if r.audit else None
            if bar is None or r.fitness > bar:
                lead_full = None if lead is None or not lead.audit else lead.audit["fitness"]
                if lead is None or full is None or lead_full is None or full >= lead_full:
                    lead = r
                bar = r.fitness
        out.append(None if lead is None else lead.audit["fitness"] if lead.audit else lead.fitness)
    return out


def test_the_report_is_one_offline_file_with_every_view(run):
    run_dir, _ = run
    text = (run_dir / "report.html").read_text()
    library = plotly.offline.get_plotlyjs()
    assert library in text  # plotly.js is inlined whole
    page = text.replace(library, "")
    assert "src=" not in page and "http" not in page  # and the page itself fetches nothing
    start = text.index('<script type="application/json" id="state">') + len(
        '<script type="application/json" id="state">'
    )
    embedded = json.loads(text[start : text.index("</script>", start)])
    ids = [v["id"] for v in embedded["views"]]
    assert ids == ["fitness", "tasks", "genome", "trajectories", "pareto", "estimator", "recipe", "report-md"]
    chosen = json.loads((run_dir / "best_heldout.json").read_text())["index"]
    recipe = next(v for v in embedded["views"] if v["id"] == "recipe")["html"]
    assert "--random-seed" in recipe and "mergekit-yaml best.yaml OUT" in recipe
    assert "finished" in embedded["summary"] and f"candidate {chosen}" in embedded["summary"]


def test_the_figures_show_what_the_run_directory_holds(run):
    run_dir, _ = run
    view = load_view(run_dir)
    records = RunStore(run_dir).records()
    fig = fitness(view)
    assert list(fig.data[0].y) == [r.fitness for r in records if r.ok]
    assert list(fig.data[1].y) == leader_scores(records)  # the leader by the run's rule (audited: full score)
    baselines = json.loads((run_dir / "baselines.json").read_text())
    # a level line per parent and plain merge, named in the legend
    levels = {t.name: set(t.y) for t in fig.data if t.mode == "lines" and t.name != "best so far"}
    assert len(levels) == len(view.inputs) + len(baselines) and not fig.layout.annotations
    assert levels["start point (baseline)"] == {baselines["start point"]["fitness"]}
    chosen = view.chosen
    heat = genome(view).data[0]
    assert list(heat.x) == ["math_a", "lang_b"] and list(heat.y) == ["layers[0]", "layers[1]"]
    assert heat.z[0][0] == chosen.genes["layers[0].math_a.weight"]
    assert heat.z[1][1] == chosen.genes["layers[1].lang_b.weight"]
    gene = next(t for t in trajectories(view).data if t.name == "weight: layers[1] lang_b")
    assert list(gene.x) == [0, 1] and gene.y[1] == pytest.approx(
        np.mean([r.genes["layers[1].lang_b.weight"] for r in records if r.generation == 1])
    )
    front = [json.loads(line)["index"] for line in (run_dir / "pareto.jsonl").read_text().splitlines()]
    assert sorted(t[1:] for t in pareto(view).data[1].text) == sorted(str(i) for i in front)
    held = json.loads((run_dir / "best_heldout.json").read_text())
    bars = {trace.name: trace for trace in task_scores(view).data if trace.xaxis == "x2"}  # the held-out panel
    assert list(bars[f"chosen merge (candidate {chosen.index})"].y) == [
        held["heldout"]["math_a"],
        held["heldout"]["facts_b"],
    ]
    points = estimator_points(view)
    audited = [r for r in records if r.audit is not None]
    assert len(points["audited candidates"]) == 2 * len(audited) > 0
    assert points["audited candidates"][0][:2] == (
        audited[0].tasks["math_a"]["estimate"],
        audited[0].audit["tasks"]["math_a"],
    )
    assert len(points["finalists"]) == 2 * 2  # top_k finalists rescored on every search item, two tasks each


def test_failed_candidates_are_marked_on_the_fitness_plot(run):
    view = load_view(run[0])
    broken = dataclasses.replace(view.records[3], status="failed", fitness=None, error="CUDA out of memory")
    view.records[3] = broken
    marks = [trace for trace in fitness(view).data if trace.name == "failed"]
    assert len(marks) == 1 and list(marks[0].x) == [3] and "CUDA out of memory" in marks[0].text[0]


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_report_reads_a_running_run_and_writes_only_where_told(run, tmp_path, capsys):
    run_dir = shutil.copytree(run[0], tmp_path / "live")
    (run_dir / "report.html").unlink()
    holder = (  # a live run: another process holds the run's lock
        "import sys, time; from mergekit_evo.store.runs import RunStore; s = RunStore(sys.argv[1]); s.lock(); "
        "print('locked', flush=True); time.sleep(120)"
    )
    writer = subprocess.Popen([sys.executable, "-c", holder, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
    try:
        before = files_of(run_dir)
        with pytest.raises(SystemExit) as exit_:
            main(["report", str(run_dir)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {run_dir} is being written by pid") and err.endswith(
            "give --out FILE to write the report elsewhere"
        )
        main(["report", str(run_dir), "--out", str(tmp_path / "live.html")])
        assert files_of(run_dir) == before  # the reader wrote nothing into the run
        embedded = (tmp_path / "live.html").read_text().split('id="state">')[1].split("</script>")[0]
        assert f"running (pid {writer.pid})" in json.loads(embedded)["summary"]
    finally:
        writer.kill()
        writer.wait()
    main(["report", str(run_dir)])
    assert (run_dir / "report.html").is_file()


def test_the_dashboard_serves_only_the_runs_own_files_and_answers_unchanged_polls_empty(run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(run[0], runs / "a")
    shutil.copytree(run[0], runs / "b")
    (runs / "not-a-run").mkdir()
    board = Dashboard(runs)
    assert board.route("/run/a/files/best.yaml")[2] == (runs / "a" / "best.yaml").read_bytes()
    for path in (
        "/run/a/files/../../b/config.yaml",
        "/run/a/files/%2e%2e/fingerprint.json",
        "/run/a/files/fingerprint.json",
        "/run/a/files/checkpoints/gen-0000.pkl",
        "/run/not-a-run/",
        "/etc/passwd",
        "/run/a/../../etc/passwd",
    ):
        assert board.route(path)[0] == 404, path
    status, _, body = board.route("/run/a/state")
    version = json.loads(body)["version"]
    assert status == 200 and board.route(f"/run/a/state?since={version}")[0] == 204
    index = json.loads(board.route("/state")[2])
    assert '<a href="run/a/">a</a>' in index["summary"] and '<a href="run/b/">b</a>' in index["summary"]
    assert len(index["views"][0]["figure"]["data"]) == 2  # both runs' curves side by side
    assert board.route(f"/state?since={index['version']}")[0] == 204
    with pytest.raises(UserError, match="neither a run directory nor a folder of runs"):
        Dashboard(runs / "not-a-run")
    server = make_server(board, "127.0.0.1", 0)
    try:
        with pytest.raises(UserError, match=r"^--port: cannot serve on 127\.0\.0\.1:\d+ .*give another port, or 0"):
            make_server(board, "127.0.0.1", server.server_address[1])
    finally:
        server.server_close()


def test_an_observer_knows_its_run_by_folder_and_fingerprint(run, tmp_path):
    run_dir = run[0]
    config = load_view(run_dir).config
    one = Observer(options={}, run_dir=run_dir, config=config)
    assert Observer(options={}, run_dir=run_dir, config=config).tracking_id == one.tracking_id
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    assert Observer(options={}, run_dir=copy, config=config).tracking_id != one.tracking_id
    record = RunStore(run_dir).records()[0]
    metrics = one.candidate_metrics(record)
    assert metrics["fitness"] == record.fitness and metrics["objective/facts_b"] == record.objectives[1]
    assert metrics["gene/layers[1].lang_b.weight"] == record.genes["layers[1].lang_b.weight"]
    assert one.best_so_far == leader_scores(RunStore(run_dir).records())[-1]


# ------------------------------------------------------------------------------------------- in a real browser


def open_page(browser, url: str, allowed: str):
    """A page of `url`, with its console errors collected; any request outside `allowed` is refused and counted as
    an error, so a page that would fetch from the network fails here as it would offline."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def refuse_elsewhere(route):
        if route.request.url.startswith(allowed):
            route.continue_()
        else:
            errors.append(f"fetched {route.request.url}")
            route.abort()

    page.route("**/*", refuse_elsewhere)
    page.goto(url)
    return page, errors


def drawn_plots(page) -> dict[str, int]:
    """Each plot's id and how many points its traces hold, for the plots plotly has drawn (an SVG with marks)."""
    return page.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll('.plot')).filter(
              d => d.querySelector('.main-svg') && d.querySelectorAll('.trace, .hm, image').length > 0
           ).map(d => [d.parentElement.id, d.data.reduce((n, t) => n + ((t.x || t.z || (t.dimensions && t.dimensions[0].values) || []).length), 0)]))"""
    )


def test_the_report_loads_offline_in_a_browser_with_every_plot_drawn(run, browser, artifacts):
    url = (run[0] / "report.html").as_uri()
    page, errors = open_page(browser, url, allowed=url)
    page.wait_for_function("document.querySelectorAll('.plot .main-svg').length >= 6")
    plots = drawn_plots(page)
    assert set(plots) == {f"view-{v}" for v in ("fitness", "tasks", "genome", "trajectories", "pareto", "estimator")}
    assert all(points > 0 for points in plots.values()), plots
    assert "mergekit-yaml best.yaml OUT" in page.inner_text("#view-recipe")
    page.screenshot(path=str(artifacts / "report.png"), full_page=True)
    assert errors == []


def test_the_dashboard_shows_a_candidate_recorded_after_the_page_loaded(run, browser, artifacts, tmp_path):
    run_dir = shutil.copytree(run[0], tmp_path / "live")
    server = make_server(Dashboard(run_dir, poll_ms=300), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        page, errors = open_page(browser, url, allowed=url)
        page.wait_for_function("document.querySelectorAll('.plot .main-svg').length >= 6")
        assert page.inner_text("#count") == "8 candidates"
        points = page.evaluate("document.querySelector('#view-fitness .plot').data[0].x.length")
        last = RunStore(run_dir).records()[-1]
        new = dataclasses.replace(last, index=last.index + 1, member=last.member + 1, fitness=0.99)
        with open(run_dir / RunStore.CANDIDATES, "a") as log:  # as the run's writer appends it
            log.write(json.dumps(new.to_row()) + "\n")
        started = time.monotonic()
        page.wait_for_function("document.querySelector('#count').textContent === '9 candidates'", timeout=15000)
        assert time.monotonic() - started < 15
        assert page.evaluate("document.querySelector('#view-fitness .plot').data[0].x.length") == points + 1
        page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
        assert errors == []
    finally:
        server.shutdown()
        server.server_close()
