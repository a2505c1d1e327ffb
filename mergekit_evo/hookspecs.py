"""The plugin hooks of mergekit-evo. Built-ins and third-party plugins implement exactly these.

A plugin is a module with functions decorated by `mergekit_evo.hookimpl`, published through an entry point in the
group `mergekit_evo`. The `register_*` hooks receive a `register(name, factory)` callback; observer hooks are
called as a run progresses.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mergekit_evo")
hookimpl = pluggy.HookimplMarker("mergekit_evo")


@hookspec
def register_optimizers(register):
    """Register optimizers: `register(name, cls)`, cls(dim, n_objectives, seed, population, options, x0)."""


@hookspec
def register_estimators(register):
    """Register fitness estimators: `register(name, cls)`, cls(options, seed) (see `estimators.Estimator`)."""


@hookspec
def register_task_backends(register):
    """Register task backends: `register(name, cls)`, cls(task_config) (see `tasks.TaskBackend`)."""


@hookspec
def register_mergers(register):
    """Register mergers: `register(name, cls)`; cls(config) has the context managers `merged(merge_config, seed)` and
    `source(ref)`, each yielding a `merging.LoadedModel`, and optionally `describe()`, a line for the run's log, and
    `merge_device`, where mergekit's arithmetic runs ("cpu" if absent), recorded so the best model is rewritten there."""


@hookspec
def on_candidate_scored(record, run_dir):
    """Called after each candidate is recorded (a `runs.CandidateRecord`, failed ones included)."""


@hookspec
def on_generation_end(generation, records, run_dir):
    """Called after a generation is told to the optimizer and checkpointed."""


@hookspec
def on_run_end(best, run_dir):
    """Called once when a run finishes, with the best record (or None if every candidate failed)."""
