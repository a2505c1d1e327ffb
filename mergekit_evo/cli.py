"""The `mergekit-evo` command line. User errors print one line and exit with status 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mergekit_evo.errors import UserError


def _quiet_libraries() -> None:
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


@cli.group("tiny-world")
def tiny_world() -> None:
    """The bundled tiny world: real small Llama specialists, item sets and lm-eval tasks, built locally."""


@tiny_world.command("build")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for data, initialisation and training.")
@click.option("--hidden", type=int, default=256, show_default=True, help="Hidden size of the Llama models.")
@click.option("--layers", type=int, default=4, show_default=True, help="Number of transformer layers.")
@click.option("--base-steps", type=int, default=800, show_default=True, help="Training steps of the base model.")
@click.option("--specialist-steps", type=int, default=300, show_default=True, help="Fine-tuning steps per specialist.")
@click.option("--items-per-skill", type=int, default=256, show_default=True, help="Items per skill (half search, half test).")
@click.option("--force", is_flag=True, help="Rebuild even when a matching world is already there.")
def tiny_world_build(directory: Path | None, force: bool, **sizes) -> None:
    """Build the tiny world into DIRECTORY (default: the cache), or reuse a matching one.

    \b
    The world is a miniature of Sakana's Japanese-math experiment: a base Llama, a specialist for arithmetic
    in language A, a specialist for question answering in language B, item sets (JSONL, search and test
    splits) and lm-eval task YAMLs over the same files. A table of measured accuracies ends the build.

    \b
    Examples:
      mergekit-evo tiny-world build                 # into ~/.cache/mergekit-evo/tiny-world/<fingerprint>
      mergekit-evo tiny-world build ./world --seed 1
    """
    from pydantic import ValidationError

    from mergekit_evo.tiny_world.build import WorldSpec, ensure_world, format_table, load_manifest

    _quiet_libraries()
    try:
        spec = WorldSpec(**sizes)
    except ValidationError as e:
        raise UserError(_first_validation_message(e, prefix="--")) from None
    path = ensure_world(directory, spec, force=force, log=click.echo)
    click.echo(format_table(load_manifest(path)))
    click.echo(f"tiny world ready at {path}")


def _first_validation_message(error, prefix: str = "") -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    if prefix:
        field = prefix + field.replace("_", "-")
    return f"{field}: {first['msg']} (got {first.get('input')!r})"


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; `mergekit-evo resume RUN_DIR` continues a run", err=True)
        sys.exit(130)
