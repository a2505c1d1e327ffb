"""`mergekit-evo tiny-world`: build the tiny world the demo and the tests run on, or print where it is."""

from __future__ import annotations

from pathlib import Path

import click

from mergekit_evo.cli.common import cli, quiet_libraries
from mergekit_evo.plugin.errors import UserError


@cli.group("tiny-world")
def tiny_world() -> None:
    """The bundled tiny world: real small Llama specialists, item sets and lm-eval tasks, built locally."""


@tiny_world.command("build")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--seed", type=int, help="Seed for data, initialisation and training.  [default: 0]")
@click.option("--hidden", type=int, help="Hidden size of the Llama models.  [default: 256]")
@click.option("--layers", type=int, help="Number of transformer layers.  [default: 8]")
@click.option("--base-steps", type=int, help="Training steps of the base model.  [default: 800]")
@click.option("--specialist-steps", type=int, help="Training steps of the math specialist.  [default: 500]")
@click.option("--language-steps", type=int, help="Training steps of the language specialist.  [default: 500]")
@click.option("--items-per-skill", type=int, help="Facts items per skill (half search, half test).  [default: 256]")
@click.option(
    "--math-search-items",
    type=int,
    help="Arithmetic questions in the search split; the rest (256) are held out.  [default: 536]",
)
@click.option(
    "--pinned/--unpinned",
    default=None,
    help="Pin the build's numerics (torch's kernels, threads, MKL) for the same weights on every x86-64 CPU with "
    "AVX2 (the default), or build with this CPU's own kernels.",
)
@click.option("--force", is_flag=True, help="Rebuild even when a matching world is already there.")
def tiny_world_build(directory: Path | None, force: bool, **sizes) -> None:
    """Build the tiny world into DIRECTORY (default: the cache), or reuse a matching one.

    \b
    The world is a miniature of Sakana's Japanese-math experiment: a base Llama, a specialist for arithmetic
    (plus, minus, times) asked in language A, a specialist that knows all of language B but no arithmetic,
    item sets (JSONL, search and test splits) and lm-eval task YAMLs over the same files. The target skill,
    arithmetic asked in B (math_b), is in no model's training data. A table of measured accuracies ends the build.

    \b
    Examples:
      mergekit-evo tiny-world build                 # into ~/.cache/mergekit-evo/tiny-world/<fingerprint>
      mergekit-evo tiny-world build ./world --seed 1
      mergekit-evo tiny-world build --unpinned      # this CPU's own kernels: not the reference weights
    """
    from pydantic import ValidationError

    from mergekit_evo.config import format_validation_error
    from mergekit_evo.demo.tiny_world.build import (
        WorldSpec,
        ensure_world,
        format_table,
        world_manifest,
    )

    quiet_libraries()
    try:
        spec = WorldSpec(**{name: value for name, value in sizes.items() if value is not None})
    except ValidationError as e:
        raise UserError(format_validation_error(e, as_flag=True)) from None
    path = ensure_world(directory, spec, force=force, log=click.echo)
    click.echo(format_table(world_manifest(path)))
    click.echo(f"tiny world ready at {path}")


@tiny_world.command("path")
def tiny_world_path() -> None:
    """Print the default tiny world's folder, building it first if needed (for `export TINY_WORLD=$(...)`)."""
    from mergekit_evo.demo.tiny_world import ensure_world

    quiet_libraries()
    click.echo(ensure_world(log=lambda line: click.echo(line, err=True)))
