"""The plugin hooks of mergekit-evo. Built-ins and third-party plugins implement exactly these.

A plugin is a module with functions decorated by `mergekit_evo.hookimpl`, published through an entry point in the
group `mergekit_evo`. A function may take fewer arguments than its hook offers (pluggy passes only those it names).
Registration hooks are called when the plugins are first listed (`mergekit-evo plugins`, or the start of a run);
the observer hooks (and `Observer`s) while a run goes on, in the running process; one that raises is reported once
and the run goes on. A name registered by two distributions is refused
when a config uses it, naming both, unless the config's `providers:` says which one (see `plugins.Registry`).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mergekit_evo")
hookimpl = pluggy.HookimplMarker("mergekit_evo")


@hookspec
def register_optimizers(register):
    """Register optimizers.

    :param register: call `register(name, cls)` once per optimizer; `cls` subclasses `mergekit_evo.Optimizer` and
        is built as `cls(dim=, n_objectives=, seed=, population=, options=, x0=, steps=, depths=)` (see its
        docstring).
        `name` is what a config's `optimizer.name` says.
    :return: nothing.
    """


@hookspec
def register_estimators(register):
    """Register fitness estimators.

    :param register: call `register(name, cls)`; `cls` subclasses `mergekit_evo.Estimator` and is built as
        `cls(options=, seed=)`. `name` is what a config's `estimator.name` says.
    :return: nothing.
    """


@hookspec
def register_task_backends(register):
    """Register task backends.

    :param register: call `register(name, cls)`; `cls` subclasses `mergekit_evo.TaskBackend` and is built once
        per task as `cls(config=task_config)`. `name` is what a task's `backend` says.
    :return: nothing.
    """


@hookspec
def register_mergers(register):
    """Register mergers.

    :param register: call `register(name, cls)`; `cls` subclasses `mergekit_evo.Merger` and is built once per
        run as `cls(config=run_config)`. `name` is what a config's `merger.name` says.
    :return: nothing.
    """


@hookspec
def register_executors(register):
    """Register executors: where candidates are merged and scored (the core's `local`; `ray` from mergekit-evo-ray).

    :param register: call `register(name, cls)`; `cls` subclasses `mergekit_evo.Executor` and is built once per run
        as `cls(options=)`. `name` is what a config's `executor.name` says.
    :return: nothing.
    """


@hookspec
def register_observers(register):
    """Register observers: trackers a config turns on by name under `observers:` (wandb, mlflow).

    :param register: call `register(name, cls)`; `cls` subclasses `mergekit_evo.Observer` and is built once per run
        as `cls(options=, run_dir=, config=)`; its methods mirror the three hooks below.
    :return: nothing.
    """


@hookspec
def on_candidate_scored(record, run_dir):
    """Called after each candidate is appended to `candidates.jsonl`, failed ones included.

    :param record: the `mergekit_evo.CandidateRecord` just written.
    :param run_dir: the run's folder (a `Path`); read it, never write into it.
    :return: nothing; an exception here is reported once and the run goes on (the record is already safe).
    """


@hookspec
def on_generation_end(generation, records, run_dir):
    """Called after a generation is told to the optimizer and checkpointed.

    :param generation: the generation's number, from 0.
    :param records: that generation's `CandidateRecord`s, in the order they were asked.
    :param run_dir: the run's folder.
    :return: nothing.
    """


@hookspec
def on_run_end(best, run_dir):
    """Called once when a run finishes its budget, after best.yaml, report.md and report.html are written.

    :param best: the chosen `CandidateRecord`, or None if every candidate failed.
    :param run_dir: the run's folder.
    :return: nothing.
    """
