"""`mergekit-evo plugins`: what the loaded plugins provide, and one plugin's options in full."""

from __future__ import annotations

import inspect

import click

from mergekit_evo.cli.common import cli
from mergekit_evo.plugin.errors import UserError


@cli.command()
@click.argument("name", required=False)
def plugins(name: str | None) -> None:
    """List the loaded plugins: what each provides and from which distribution.

    \b
    With NAME, one plugin in full: its description and every option with its type, default and meaning, e.g.
      mergekit-evo plugins cma
    """
    from mergekit_evo.plugin.manager import KINDS, registry

    reg = registry()
    if name is not None:
        _describe_plugin(reg, name)
        return
    for kind in KINDS:
        click.echo(f"{kind.replace('_', ' ')}:")
        for name in reg.names(kind):
            if name in reg.conflicts[kind]:
                both = " and ".join(sorted(reg.conflicts[kind][name]))
                click.echo(f"  {name:<14} CONFLICT: registered by {both}; a config must say which (providers:)")
                continue
            doc = (reg.factories[kind][name].__doc__ or "").strip().splitlines()
            click.echo(f"  {name:<14} {reg.providers[kind][name]:<28} {doc[0] if doc else ''}")
    for name, error in reg.failed.items():
        click.echo(f"failed to load plugin {name}: {error}")


def _describe_plugin(reg, name: str) -> None:
    """`plugins NAME`: each kind NAME is registered for, its description, and its options with defaults."""
    from pydantic_core import PydanticUndefined

    from mergekit_evo.plugin.errors import close_matches
    from mergekit_evo.plugin.manager import KINDS

    kinds = [kind for kind in KINDS if name in reg.factories[kind]]
    if not kinds:
        every = sorted({n for kind in KINDS for n in reg.names(kind)})
        raise UserError(f"plugins: no plugin named {name!r} is installed; {close_matches(name, every)}")
    for kind in kinds:
        factory = reg.factories[kind][name]
        click.echo(f"{name}: {kind.replace('_', ' ')[:-1]} from {reg.providers[kind][name]}")
        doc = inspect.cleandoc(factory.__doc__ or "")
        if doc:
            click.echo("\n".join("  " + line if line else "" for line in doc.splitlines()))
        fields = getattr(factory, "Options", None)
        fields = getattr(fields, "model_fields", {}) if fields is not None else {}
        if not fields:
            click.echo("  options: none")
            continue
        click.echo("  options:")
        for option, info in fields.items():
            default = (
                "required"
                if info.default is PydanticUndefined and info.default_factory is None
                else (f"default {info.default!r}" if info.default_factory is None else "default: computed")
            )
            annotation = info.annotation
            kind_of = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
            about = f": {info.description}" if info.description else ""
            click.echo(f"    {option} ({kind_of}, {default}){about}")
