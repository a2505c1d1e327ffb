"""What every command shares: the `mergekit-evo` group, the libraries kept quiet, and starting or resuming a run
with its report printed at the end."""

from __future__ import annotations

from pathlib import Path

import click


def quiet_libraries() -> None:
    """transformers' per-load progress bars and advice drown our own progress; keep only its errors."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="mergekit-evo")
def cli() -> None:
    """Evolve mergekit merge recipes with cheap fitness estimates.

    \b
    Quick start (no downloads; builds tiny local models first):
      mergekit-evo demo
    """


class Interrupted(Exception):
    """Ctrl-C during a run: told with the command that continues it."""

    def __init__(self, run_dir: Path):
        super().__init__(f"interrupted; nothing recorded is lost: `mergekit-evo resume {run_dir}` continues the run")


class AllFailed(Exception):
    """A run whose every candidate failed: it finished, but found nothing."""


def start_or_resume(make_evolution, run_dir: Path, progress: bool = True) -> None:
    """Build the run (`make_evolution()`), run it and print its report; Ctrl-C says how to continue."""
    from mergekit_evo.store.runs import RunStore

    try:
        result = make_evolution().run(progress=progress)
    except KeyboardInterrupt:
        raise Interrupted(run_dir) from None
    click.echo("")
    click.echo(result.run_dir.joinpath(RunStore.REPORT).read_text())
    click.echo(f"run directory: {result.run_dir}")
    click.echo(
        f"plots: {result.run_dir.joinpath(RunStore.REPORT_HTML)} (open it in a browser; "
        f"`mergekit-evo dashboard {result.run_dir}` serves the same views live)"
    )
    if result.best is None and result.records:
        first = next(r.error for r in result.records if r.error)
        raise AllFailed(
            f"every candidate failed; the first error was {first} (all are in "
            f"{result.run_dir.joinpath(RunStore.CANDIDATES)})"
        )
