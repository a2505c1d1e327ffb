"""mergekit-evo: evolutionary model merging on top of mergekit, with cheap fitness estimators and plugins.

This module is the public API a plugin builds on (version `API_VERSION`): everything a plugin imports comes from
here, and nothing else in the package is promised to keep its name. The names load on first use, so
`import mergekit_evo` stays cheap (the CLI lists plugins without importing torch or mergekit).

    from mergekit_evo import Optimizer, UserError, hookimpl

The API's version goes up when a name is removed or a contract changes in a way that breaks a plugin.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from mergekit_evo.threads import PROCESS_DEFAULTS

# Set before torch is imported, by the CLI or by a Python program that imports mergekit_evo first: torch's allocator
# reads them once (threads.py says why); a user's own setting wins.
for _name, _value in PROCESS_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
API_VERSION = (
    2  # 2: optimizers are resumed by replaying the records (deterministic given seed and tells), not unpickled
)

# public name -> the module that defines it
_PUBLIC = {
    "hookimpl": "mergekit_evo.plugin.hookspecs",
    "Optimizer": "mergekit_evo.run.optimizers",
    "Estimator": "mergekit_evo.estimate.estimators",
    "TaskBackend": "mergekit_evo.scoring.tasks",
    "TaskConfig": "mergekit_evo.config",
    "Merger": "mergekit_evo.merge.base",
    "Executor": "mergekit_evo.run.executors",
    "Job": "mergekit_evo.run.executors",
    "Outcome": "mergekit_evo.run.executors",
    "Worker": "mergekit_evo.run.executors",
    "WorkerSpec": "mergekit_evo.run.executors",
    "Observer": "mergekit_evo.views.observers",
    "LoadedModel": "mergekit_evo.merge.base",
    "ResponseSource": "mergekit_evo.estimate.responses",
    "Scores": "mergekit_evo.estimate.responses",
    "CandidateRecord": "mergekit_evo.store.runs",
    "UserError": "mergekit_evo.plugin.errors",
    "close_matches": "mergekit_evo.plugin.errors",
    "parse_plugin_options": "mergekit_evo.plugin.errors",
    "json_hash": "mergekit_evo.store.fingerprint",
}

# what `from mergekit_evo import *` gives, and what the lazy loader serves (names listed once, in _PUBLIC)
__all__ = sorted(["API_VERSION", "__version__", *_PUBLIC])


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mergekit_evo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and editors see: the names of _PUBLIC, from the same modules (tested)
    from mergekit_evo.config import TaskConfig  # noqa: F401
    from mergekit_evo.estimate.estimators import Estimator  # noqa: F401
    from mergekit_evo.estimate.responses import ResponseSource, Scores  # noqa: F401
    from mergekit_evo.merge.base import LoadedModel, Merger  # noqa: F401
    from mergekit_evo.plugin.errors import (  # noqa: F401
        UserError,
        close_matches,
        parse_plugin_options,
    )
    from mergekit_evo.plugin.hookspecs import hookimpl  # noqa: F401
    from mergekit_evo.run.executors import (  # noqa: F401
        Executor,
        Job,
        Outcome,
        Worker,
        WorkerSpec,
    )
    from mergekit_evo.run.optimizers import Optimizer  # noqa: F401
    from mergekit_evo.scoring.tasks import TaskBackend  # noqa: F401
    from mergekit_evo.store.fingerprint import json_hash  # noqa: F401
    from mergekit_evo.store.runs import CandidateRecord  # noqa: F401
    from mergekit_evo.views.observers import Observer  # noqa: F401
