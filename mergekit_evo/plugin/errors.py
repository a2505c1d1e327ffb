"""How a mistake is told to the user: the one exception type, and the helpers that word its one-line messages.

The CLI prints a `UserError` as one line and exits with status 2; anything else is a bug and keeps its traceback.
Plugins raise it too, through `mergekit_evo.UserError`, and word their messages with the same helpers.
"""

from __future__ import annotations

import difflib
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class UserError(Exception):
    """A wrong config, path or argument: the message names what is wrong and how to fix it."""


class RunFailure(Exception):
    """The run's own failure, not the user's mistake (a plugin that breaks its contract): one line, exit status 1."""


def close_matches(name: str, valid: list[str]) -> str:
    """`valid: a, b, c; did you mean b?`: the tail of a message refusing an unknown `name`."""
    near = difflib.get_close_matches(name, valid, n=3)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return f"valid: {', '.join(sorted(valid))}{hint}"


class NoOptions(BaseModel):
    """The options of a plugin that takes none: any key is refused."""

    model_config = ConfigDict(extra="forbid")


Options = TypeVar("Options", bound=BaseModel)


def parse_plugin_options(model: type[Options], options: dict, field: str) -> Options:
    """Validate a plugin's `options:` mapping against its pydantic model; errors name the option and the valid ones.
    Unknown keys are refused unless the model says `extra="allow"`, whatever else its config says.

    `field` is where the options sit in the config (`optimizer.options`), so the message points the user there.
    """
    if model.model_config.get("extra") != "allow":  # strict by default: a misspelt option is never ignored
        names = [f.alias or n for n, f in model.model_fields.items()]
        unknown = [key for key in options if key not in names and key not in model.model_fields]
        if unknown:
            raise UserError(f"{field}.{unknown[0]}: unknown option; valid options: {', '.join(names) or 'none'}")
    try:
        return model.model_validate(options)
    except ValidationError as e:
        first = e.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            valid = ", ".join(model.model_fields) or "none"
            raise UserError(f"{field}.{name}: unknown option; valid options: {valid}") from None
        raise UserError(f"{field}.{name}: {first['msg']} (got {first.get('input')!r})") from None
