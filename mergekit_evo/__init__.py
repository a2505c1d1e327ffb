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
    "hookimpl": "mergekit_evo.hookspecs",
    "Optimizer": "mergekit_evo.optimizers",
    "Estimator": "mergekit_evo.estimators",
    "TaskBackend": "mergekit_evo.tasks",
    "TaskConfig": "mergekit_evo.config",
    "Merger": "mergekit_evo.merging",
    "Executor": "mergekit_evo.executors",
    "Job": "mergekit_evo.executors",
    "Outcome": "mergekit_evo.executors",
    "Worker": "mergekit_evo.executors",
    "WorkerSpec": "mergekit_evo.executors",
    "Observer": "mergekit_evo.observers",
    "LoadedModel": "mergekit_evo.merging",
    "ResponseSource": "mergekit_evo.responses",
    "Scores": "mergekit_evo.responses",
    "CandidateRecord": "mergekit_evo.runs",
    "UserError": "mergekit_evo.errors",
    "close_matches": "mergekit_evo.errors",
    "parse_plugin_options": "mergekit_evo.errors",
    "json_hash": "mergekit_evo.fingerprint",
}

__all__ = [
    "API_VERSION",
    "CandidateRecord",
    "Estimator",
    "Executor",
    "Job",
    "LoadedModel",
    "Merger",
    "Observer",
    "Optimizer",
    "Outcome",
    "ResponseSource",
    "Scores",
    "TaskBackend",
    "TaskConfig",
    "UserError",
    "Worker",
    "WorkerSpec",
    "__version__",
    "close_matches",
    "hookimpl",
    "json_hash",
    "parse_plugin_options",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mergekit_evo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and editors see
    from mergekit_evo.config import TaskConfig
    from mergekit_evo.errors import UserError, close_matches, parse_plugin_options
    from mergekit_evo.estimators import Estimator
    from mergekit_evo.executors import Executor, Job, Outcome, Worker, WorkerSpec
    from mergekit_evo.fingerprint import json_hash
    from mergekit_evo.hookspecs import hookimpl
    from mergekit_evo.merging import LoadedModel, Merger
    from mergekit_evo.observers import Observer
    from mergekit_evo.optimizers import Optimizer
    from mergekit_evo.responses import ResponseSource, Scores
    from mergekit_evo.runs import CandidateRecord
    from mergekit_evo.tasks import TaskBackend
