"""The one exception type for mistakes a user can fix.

The CLI prints a `UserError` as one line and exits with status 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A wrong config, path or argument: the message names what is wrong and how to fix it."""
