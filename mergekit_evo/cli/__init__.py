"""The `mergekit-evo` command line. User errors print one line and exit with status 2, never a traceback.

Each module here holds a few commands (common.py: the group they hang on); importing them registers them."""

from __future__ import annotations

import sys

import click

from mergekit_evo.cli import evolve, plugins, running, views, world
from mergekit_evo.cli.common import AllFailed, Interrupted, cli
from mergekit_evo.plugin.errors import RunFailure, UserError
from mergekit_evo.threads import apply_process_defaults

COMMANDS = (evolve, plugins, running, views, world)  # registered on `cli` when imported


def main(argv: list[str] | None = None) -> None:
    try:
        apply_process_defaults()  # before any command imports torch (mergekit_evo/threads.py says why)
        cli.main(args=argv, standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except Interrupted as e:
        click.echo(str(e), err=True)
        sys.exit(130)
    except (AllFailed, RunFailure) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except click.exceptions.Abort as e:
        if e.__cause__ is not None and not isinstance(e.__cause__, KeyboardInterrupt):
            raise e.__cause__ from None  # click turns any EOFError into Abort; one that is not Ctrl-D is a bug to show
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:  # a bad flag or argument: one line, as every other mistake is
        where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        click.echo(f"error: {e.format_message()}{where}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; `mergekit-evo resume RUN_DIR` continues a run", err=True)
        sys.exit(130)
