"""The commands that read a run folder: `best` (the recipe, and the model on request), `report` (report.html)
and `dashboard` (a live page). Each reads the run and writes nothing into it but its own report."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mergekit_evo.cli.common import cli, quiet_libraries
from mergekit_evo.plugin.errors import UserError


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--by", help="Pick by this rule instead of the run's `best_by`: 'weighted' or a task name.")
@click.option(
    "--write-model", type=click.Path(path_type=Path), help="Also merge the best recipe into this folder with mergekit."
)
@click.option("--force", is_flag=True, help="Let --write-model write into a folder that is not empty.")
def best(run_dir: Path, by: str | None, write_model: Path | None, force: bool) -> None:
    """Print the best recipe of RUN_DIR as mergekit YAML; optionally write the merged model.

    \b
    Reads the run and writes nothing to it, so it may look at a run that is still going.

    \b
    Examples:
      mergekit-evo best runs/demo --write-model ./merged
      mergekit-yaml runs/demo/best.yaml ./merged-again      # the same model, with mergekit alone
      mergekit-evo best runs/demo-pareto --by facts_b       # the front's best on one objective
    """
    from mergekit_evo.config import best_by_rules
    from mergekit_evo.merge.base import (  # mergekit is imported only to merge
        reproduce_command,
        write_candidate_model,
    )
    from mergekit_evo.plugin.errors import close_matches
    from mergekit_evo.rank.ranking import chosen, guarded, score_by
    from mergekit_evo.store.files import disk_errors
    from mergekit_evo.store.runs import RunStore

    store, cfg = RunStore.open(run_dir, log=lambda line: click.echo(line, err=True))
    by = by or cfg.best_by
    rules = best_by_rules(cfg.tasks)
    if by not in rules:
        raise UserError(f"--by: must be 'weighted' or a task name; {close_matches(by, rules)}")
    if write_model:
        from mergekit_evo.config import check_config

        check_config(cfg)  # merging needs the models where the run found them
        check_model_target(write_model, force)
    final = (store.read_json(RunStore.BEST_HELDOUT) or {}).get("index") if by == cfg.best_by else None
    record = chosen(store.records(), by, guarded(cfg), final)  # what best.yaml holds, under the run's own rule
    if record is None:
        raise UserError(f"{run_dir} has no successfully scored candidate yet")
    click.echo(f"# candidate {record.index}, {by} {score_by(record, by):.4f}")
    click.echo(f"# exactly the scored tensors: {reproduce_command(record.seed, record.device, 'THIS.yaml')}")
    click.echo(record.merge_yaml.rstrip())
    if write_model:
        quiet_libraries()
        with disk_errors(write_model):
            click.echo(write_candidate_model(record.merge_yaml, record.seed, record.device, write_model))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write the page here, outside any run folder. Default: RUN_DIR/report.html, which needs the run to be "
    "stopped or finished; a running one is only read, so give --out for it.",
)
@click.option("--force", is_flag=True, help="Let --out replace an existing file that is not a mergekit-evo report.")
def report(run_dir: Path, out: Path | None, force: bool) -> None:
    """Write report.html for RUN_DIR: its plots in one file that opens offline in any browser.

    \b
    The same page every run writes when it ends: fitness of every candidate with the best so far, parents and
    plain merges; per-task scores on search, validation and held-out items; the chosen genome as a heat map and
    each gene's trajectory; the Pareto front (multi-objective runs); a cheap estimator against full scores; the
    recipe and the mergekit-yaml command that rebuilds it. It may be made at any time, also while the run goes on.
    It reads the run and writes only report.html (or --out): the record log is never touched.

    \b
    Examples:
      mergekit-evo report runs/demo                        # runs/demo/report.html, rebuilt
      mergekit-evo report runs/live --out /tmp/live.html   # a running run, only read
    """
    from mergekit_evo.store.files import disk_errors, write_atomically
    from mergekit_evo.store.runs import RunStore
    from mergekit_evo.views.report_html import report_html
    from mergekit_evo.views.run_view import load_view

    say = lambda line: click.echo(line, err=True)  # noqa: E731
    if out is None:
        store, _ = RunStore.open(run_dir, log=say)
        writer = store.writer()
        if writer is not None:
            raise UserError(
                f"{run_dir} is being written by pid {writer}, and only that process writes into it; "
                "give --out FILE to write the report elsewhere"
            )
        text = report_html(load_view(run_dir, log=say))
        store.lock(repair=False)  # the one writer for the moment it takes (a `resume` meanwhile is refused); no repair
        try:
            store.write_text(RunStore.REPORT_HTML, text)
        finally:
            store.unlock()
        click.echo(store.file(RunStore.REPORT_HTML))
        return
    check_report_target(out, force)
    text = report_html(load_view(run_dir, log=say))
    with disk_errors(out):
        write_atomically(out, text.encode())
    click.echo(out)


REPORT_MARK = b"<title>mergekit-evo run "  # what every report.html carries near its start


def check_report_target(out: Path, force: bool) -> None:
    """Where `report --out` may write: a new file, or a report it wrote before (any file with --force), in an
    existing folder that is no part of a run folder (a view never writes into a run)."""
    from mergekit_evo.store.runs import RunStore

    if out.is_dir():
        raise UserError(f"--out: {out} is a folder; name the HTML file to write, e.g. {out / 'report.html'}")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise UserError(f"--out: the folder {parent} does not exist; create it first, or name a file in another")
    for folder in (parent, *parent.parents):
        resolved = folder.resolve()
        for candidate in dict.fromkeys((folder, resolved)):
            if RunStore(candidate).parts():
                raise UserError(
                    f"--out: {out} is inside the run folder {candidate}; write the report outside it "
                    f"(`mergekit-evo report {candidate}` rebuilds its own report.html)"
                )
    if os.path.lexists(out) and not force:
        if out.is_symlink() or not out.is_file():
            raise UserError(f"--out: {out} is not a plain file; name another, or add --force to replace it")
        with out.open("rb") as f:
            head = f.read(4096)
        if REPORT_MARK not in head:
            raise UserError(
                f"--out: {out} exists and is not a mergekit-evo report; name another file, or add --force to replace it"
            )


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to serve on; 0 picks a free one.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Only this machine can reach the default, and only requests addressed to localhost names "
    "(or to this address) are answered; 0.0.0.0 opens it to the network.",
)
@click.option("--poll", type=float, default=2.0, show_default=True, help="Seconds between the page's checks.")
def dashboard(run_dir: Path, port: int, host: str, poll: float) -> None:
    """Serve a live page of RUN_DIR (or of every run in a folder) that follows the run as candidates are recorded.

    \b
    The page shows the report's views and redraws them whenever the run directory changes; it only reads the
    run, so start it beside a running `mergekit-evo run`, or after. Given a folder of runs, the first page lists
    them with their best-so-far curves side by side. Ctrl-C stops it.

    \b
    Examples:
      mergekit-evo dashboard runs/demo                     # then open http://127.0.0.1:8765/
      mergekit-evo dashboard runs/ --port 9000             # every run under runs/
      ssh -L 8765:127.0.0.1:8765 gpu-box                   # a remote run: forward the port, keep the default host
    """
    from mergekit_evo.views.dashboard import serve

    if poll <= 0:
        raise UserError("--poll: give a number of seconds above 0, e.g. --poll 2")
    serve(run_dir, host, port, log=lambda line: click.echo(line, err=True), poll_ms=int(poll * 1000))


def check_model_target(folder: Path, force: bool) -> None:
    """A folder a model may be written into: new, empty, or (with --force) not empty; and writable. Checked before any
    merge work, so a wrong target costs nothing."""
    from mergekit_evo.store.files import disk_errors

    if folder.exists() and not folder.is_dir():
        raise UserError(f"--write-model: {folder} is a file; name a folder for the merged model")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise UserError(f"--write-model: {folder} is not empty; name a new folder, or add --force to write over it")
    with disk_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".mergekit-evo-write-test"
        probe.write_bytes(b"")
        probe.unlink()
