"""The evolution loop: ask -> genome -> mergekit config -> merge -> score -> estimate -> tell -> record.

Resuming is the same code path as starting: the loop restores the optimizer state saved before the current
generation's `ask`, asks again (the same candidates, since all randomness is in that state) and scores only the
members that have no record yet.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from mergekit_evo.audit import NEW_BEST, audited, describe, drift, summary
from mergekit_evo.audit import reasons as audit_reasons
from mergekit_evo.baselines import configured_baselines
from mergekit_evo.config import EvolveConfig, check_config
from mergekit_evo.dataflow import materialize_sources
from mergekit_evo.errors import RunFailure, UserError
from mergekit_evo.executors import Executor, Job, Outcome, Worker, WorkerSpec, build_tasks
from mergekit_evo.finale import Selection, choose, finalists
from mergekit_evo.fingerprint import changes, run_fingerprint
from mergekit_evo.merging import LoadedModel, parse_merge_config
from mergekit_evo.observers import Notifier
from mergekit_evo.optimizers import tell
from mergekit_evo.pareto import pareto_front, write_front
from mergekit_evo.plugins import (
    Registry,
    check_plugin_names,
    get_plugin_manager,
    registry,
)
from mergekit_evo.preflight import check_inputs, check_item_lengths
from mergekit_evo.ranking import (
    RunningBest,
    baseline_label,
    guarded,
    input_label,
    score_by,
)
from mergekit_evo.report import report
from mergekit_evo.report_html import report_html
from mergekit_evo.responses import RunResponses, Scores
from mergekit_evo.run_view import load_view
from mergekit_evo.runs import CandidateRecord, RunStore
from mergekit_evo.significance import compare
from mergekit_evo.spaces import genome_space
from mergekit_evo.tasks import TaskBackend
from mergekit_evo.validation import HeldBack


@dataclass
class RunResult:
    run_dir: Path
    best: CandidateRecord | None
    inputs: dict[str, dict]  # input model ref -> its scores, as in inputs.json
    best_heldout: dict[str, float] | None
    records: list[CandidateRecord] = field(default_factory=list)
    pareto: list[CandidateRecord] | None = None  # multi-objective runs only
    baselines: dict[str, dict] = field(default_factory=dict)  # name -> scores (or error), as in baselines.json
    best_scores: dict | None = None  # the chosen merge on validation and held-out items, per item
    finalists: list[dict] = field(default_factory=list)  # the top-k rescored on all search items and/or validation
    comparisons: dict[str, dict[str, dict]] = field(default_factory=dict)  # other model -> task -> Comparison
    warning: str | None = None
    audit: dict | None = None  # runs with `estimator.audit`: as in audit.json


@dataclass
class _Generation:
    """A generation asked and not yet told: its genomes, its members' objectives as they are recorded, its bar."""

    xs: np.ndarray
    fitness: np.ndarray
    bar: tqdm


class _Indices:
    """Candidate indices, given in member order when a generation is asked, so a seed gives the same indices (and
    mergekit seeds) whatever order results come back in. A member a resumed generation lacks gets the index it was
    first given (its generation's first index plus its member number) when the log is clean and no record holds
    that index; otherwise a new one past every index."""

    def __init__(self, records: list[CandidateRecord], next_index: int, clean: bool):
        self.next = next_index
        self.used = {r.index for r in records}
        self.first: dict[int, int] = {}
        if clean:
            for r in records:
                self.first.setdefault(r.generation, r.index - r.member)
        self.given: dict[tuple[int, int], int] = {}

    def plan(self, generation: int, member: int) -> None:
        first = self.first.get(generation)
        planned = None if first is None else first + member
        index = planned if planned is not None and planned >= 0 and planned not in self.used else self.next
        self.first.setdefault(generation, index - member)
        self.used.add(index)
        self.given[(generation, member)] = index
        self.next = max(self.next, index + 1)

    def of(self, generation: int, member: int) -> int:
        return self.given[(generation, member)]


class Evolution:
    """One run, bound to its run directory. Build with `Evolution.start` or `Evolution.resume`."""

    def __init__(
        self, config: EvolveConfig, store: RunStore, reg: Registry | None = None, log: Callable[[str], None] = print
    ):
        self.config = config
        self.store = store
        self.log = log
        self.pm = get_plugin_manager()
        self.reg = reg or registry(self.pm)
        check_plugin_names(config, self.reg)
        scoring = check_inputs(config)
        optimizer_cls = self.reg.get("optimizers", config.optimizer.name, "optimizer.name", config.providers)
        self.genome = genome_space(config, relax_choices=bool(getattr(optimizer_cls, "relaxes_choices", False)))
        if self.genome.dim == 0:
            raise UserError("genome.parameters: nothing to evolve; give at least one parameter as {min: .., max: ..}")
        self.baselines = configured_baselines(config, self.genome)
        self.backends = {
            t.name: self.reg.get("task_backends", t.backend, "tasks", config.providers) for t in config.tasks
        }
        self.tasks = build_tasks(config, self.backends)
        check_item_lengths(self.tasks, scoring)
        for i, task in enumerate(self.tasks.values()):
            if config.tasks[i].validation_items and type(task).score_validation is TaskBackend.score_validation:
                raise UserError(
                    f"tasks[{i}].validation_items: the {config.tasks[i].backend} backend does not read "
                    "validation items; hold back a share of the search items instead (validation: 0.2)"
                )
        self.weights = {t.name: t.weight for t in config.tasks}
        if sum(self.weights.values()) <= 0:
            raise UserError("tasks: at least one task needs a weight above 0")
        estimator_cls = self.reg.get("estimators", config.estimator.name, "estimator.name", config.providers)
        self.estimator = estimator_cls(options=config.estimator.options, seed=config.seed)
        for name, task in self.tasks.items():
            self.estimator.check(name, len(task.item_ids))
        self.merger = self.reg.get("mergers", config.merger.name, "merger.name", config.providers)(config=config)
        n_objectives = len(config.objective_names())
        if n_objectives > 1 and not optimizer_cls.multi_objective:
            raise UserError(
                f"objectives: {config.optimizer.name} optimizes one objective; use `objectives: weighted` "
                "or a multi-objective optimizer"
            )
        optimizer_cls.check_options(config.optimizer.options, n_objectives)
        self.optimizer_cls = optimizer_cls
        self.executor_cls = self.reg.get("executors", config.executor.name, "executor.name", config.providers)
        self.executor_cls.check_options(config.executor.options)
        self.selection: dict[str, list[int]] = {}
        self.audit = config.estimator.audit  # None when the estimate is exact (set once the items are drawn)
        self.running = RunningBest(config.best_by, guarded=False)

    # ------------------------------------------------------------------------------ construction

    @classmethod
    def start(cls, config: EvolveConfig, run_dir: Path, log: Callable[[str], None] = print) -> Evolution:
        """A new run in `run_dir`, which must not hold one; everything is validated before the folder is touched."""
        run_dir = Path(run_dir)
        RunStore(run_dir, log).check_new()  # told before the seconds of validation and preflight below
        config = config.model_copy(update={"run_dir": run_dir.resolve()})
        evolution = cls(config, RunStore(run_dir, log), log=log)
        evolution.store = RunStore.create(run_dir, config, evolution.fingerprint(), log)
        return evolution

    @classmethod
    def resume(cls, run_dir: Path, log: Callable[[str], None] = print, accept_inputs: bool = False) -> Evolution:
        """The run in `run_dir`, locked for this process and checked against the inputs it started with.

        A run without fingerprint.json is refused, since nothing then says its records mean what the inputs mean
        now; `accept_inputs` records the current inputs as the run's instead (the user vouches for them).
        """
        store, config = RunStore.open(run_dir, log)
        check_config(config)
        store.lock()
        try:
            evolution = cls(config, store, log=log)
            evolution._check_log()  # first: a resume refused for any reason writes nothing
            evolution._check_fingerprint(accept_inputs)
        except BaseException:
            store.unlock()
            raise
        return evolution

    def fingerprint(self) -> dict:
        return run_fingerprint(self.config, {name: task.fingerprint() for name, task in self.tasks.items()})

    def _check_log(self) -> tuple[int, dict] | None:
        """The latest checkpoint, once the log and the checkpoints agree that the run has a past: a log that is gone
        while checkpoints say the search went on (or records without any checkpoint) is refused, never restarted
        over, since new candidates would then be numbered and counted as if nothing had been recorded."""
        checkpoint = self.store.latest_checkpoint()
        lines = self.store.read_records().lines
        if checkpoint is None and lines:
            raise UserError(
                f"{self.store.path}: {lines} candidates are recorded but checkpoints/ holds no checkpoint, so where "
                "the search stood is unknown; restore checkpoints/, or start a new run in another folder"
            )
        if lines and self.store.read_text(RunStore.SELECTION) is None:
            raise UserError(
                f"{self.store.path}: {RunStore.SELECTION} is missing, and the recorded candidates were scored on the "
                "items it named; restore it, or start a new run in another folder"
            )
        if checkpoint is not None and checkpoint[0] > 0 and not lines:
            missing = "is missing" if not os.path.lexists(self.store.candidates_path) else "is empty"
            raise UserError(
                f"{self.store.path}: {RunStore.CANDIDATES} {missing}, but the run reached generation {checkpoint[0]}; "
                f"restore {RunStore.CANDIDATES} (the record of every candidate), or start a new run in another folder"
            )
        return checkpoint

    def _check_fingerprint(self, accept_inputs: bool = False) -> None:
        """Refuse to add records of another meaning: the models, genome, seed or items changed since the run started.
        Nothing is written unless the check passes (or the user accepts the current inputs for a run without one)."""
        current = self.fingerprint()
        saved = self.store.read_json(RunStore.FINGERPRINT)
        if saved is None:
            if not accept_inputs:
                raise UserError(
                    f"{self.store.path}: {RunStore.FINGERPRINT} is missing, so nothing says the models, genome, seed "
                    "and items are those the records were scored with; restore it, or add --accept-inputs to record "
                    "the current ones as the run's"
                )
            self.log("recording the current inputs as the run's (--accept-inputs), so later resumes are checked")
            self.store.write_json(RunStore.FINGERPRINT, current)
            return
        changed = changes(saved, current)
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise UserError(
                f"{self.store.path}: the run's inputs changed since it started: {'; '.join(changed[:3])}{more}; put "
                "back what it started with, or start a new run in another folder with `mergekit-evo run`"
            )

    def close(self) -> None:
        """Give up the run's lock (a run also gives it up when `run` returns or the process ends)."""
        self.store.unlock()

    def _write_calibration(self) -> None:
        """calibration.json: what the estimator, as fitted now, makes of each merge it learned from (its estimate
        from the selected items against the score on all of them), so a view draws it without the plugin."""
        if self.estimator.get_state() is None or not self.store.responses_path.exists():
            return
        points = []
        for row in self.store.read_log(self.store.responses_path, dict).rows:
            if not str(row.get("key", "")).startswith("merge:"):
                continue
            for task, scores in row["tasks"].items():
                if task in self.selection:
                    values = np.asarray(scores, dtype=float)
                    estimate = self._estimate(task, self.selection[task], values[self.selection[task]])
                    points.append([estimate, float(values.mean()), f"calibration merge, {task}"])
        self.store.write_json(RunStore.CALIBRATION, {"points": points})

    def _select_items(self, progress: bool) -> None:
        """Prepare the estimator, then draw the items per task once; a resumed run checks it draws the same ones."""
        self.estimator.prepare(
            RunResponses(
                self.store,
                {n: t.item_ids for n, t in self.tasks.items()},
                self.genome.dim,
                self.config.seed,
                score_input=self._score_input_fully,
                score_point=self._score_point_fully,
                log=self.log,
                progress=progress,
                refs=self.config.input_refs(),
                start=self.genome.initial_point(),
            )
        )
        selection = {name: self._selected(name, len(task.item_ids)) for name, task in self.tasks.items()}
        chosen = {
            name: {"indices": idx, "item_ids": [self.tasks[name].item_ids[i] for i in idx]}
            for name, idx in selection.items()
        }
        for name, task in self.tasks.items():
            if isinstance(task, HeldBack):
                chosen[name]["validation_ids"] = task.validation_ids
        saved = self.store.read_json(RunStore.SELECTION)
        if saved is None:
            self.store.write_json(RunStore.SELECTION, chosen)
        elif saved != chosen:
            changed = sorted(n for n in set(saved) | set(chosen) if saved.get(n) != chosen.get(n))
            raise UserError(
                f"{self.store.path}: the items scored for {', '.join(changed)} differ from those the run "
                "started with; put the item files back, or start a new run"
            )
        self.selection = selection

    def _selected(self, task: str, n_items: int) -> list[int]:
        """The estimator's items for `task`, checked: a plugin's empty, repeated or out-of-range choice is one line
        naming it, before anything is scored."""
        name = f"estimator {self.config.estimator.name!r}"
        try:
            chosen = [int(i) for i in self.estimator.select(task, n_items)]
        except (TypeError, ValueError) as e:
            raise RunFailure(
                f"{name}: select() did not return item indices ({e}); report it to the plugin's authors"
            ) from None
        if not chosen or len(set(chosen)) != len(chosen) or min(chosen) < 0 or max(chosen) >= n_items:
            raise RunFailure(
                f"{name}: select({task!r}, {n_items}) returned {len(chosen)} indices, each must be distinct and in "
                f"[0, {n_items}); report it to the plugin's authors"
            )
        return chosen

    def _estimate(self, task: str, indices: list[int], scores: np.ndarray) -> float:
        """The estimator's estimate, checked: a plugin's non-number or non-finite estimate is one line naming it."""
        value = self.estimator.estimate(task, indices, scores)
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not np.isfinite(number):
            raise RunFailure(
                f"estimator {self.config.estimator.name!r}: estimate() returned {value!r} for task {task!r}; it must "
                "be a finite number; report it to the plugin's authors"
            )
        return number

    def _score_fully(self, model: LoadedModel) -> dict[str, np.ndarray]:
        return {
            name: np.asarray(task.score(model, range(len(task.item_ids))), dtype=float)
            for name, task in self.tasks.items()
        }

    def _score_input_fully(self, ref: str) -> dict[str, np.ndarray]:
        with self.merger.input_model(ref) as model:
            return self._score_fully(model)

    def _score_point_fully(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self.merger.merged(self.genome.to_merge_config(x), seed=self.config.seed) as model:
            return self._score_fully(model)

    # ------------------------------------------------------------------------------ scoring

    def _score(self, model: LoadedModel) -> dict[str, dict]:
        return self._estimated({name: task.score(model, self.selection[name]) for name, task in self.tasks.items()})

    def _estimated(self, scores: Mapping[str, Sequence[float] | np.ndarray]) -> dict[str, dict]:
        """Per task, the estimator's estimate from the selected items' scores, and those scores."""
        results = {}
        for name, given in scores.items():
            values = np.asarray(given, dtype=float)
            results[name] = {
                "estimate": self._estimate(name, self.selection[name], values),
                "scores": [float(s) for s in values],
            }
        return results

    def _weighted_mean(self, scores: dict[str, float]) -> float | None:
        """The tasks' weighted mean over the tasks in `scores` (None when they weigh nothing): a fitness."""
        weights = {n: w for n, w in self.weights.items() if n in scores}
        total = sum(weights.values())
        return sum(w * scores[n] for n, w in weights.items()) / total if total > 0 else None

    def _objectives(self, tasks: dict[str, dict]) -> tuple[list[float], float]:
        estimates = {name: tasks[name]["estimate"] for name in self.tasks}
        fitness = self._weighted_mean(estimates)
        assert fitness is not None  # the config refuses task weights that sum to 0
        objectives = [fitness] if self.config.objectives == "weighted" else [estimates[n] for n in self.tasks]
        return objectives, fitness

    def _full_scores(self, model: LoadedModel, splits: tuple[str, ...] = ("validation", "heldout")) -> dict:
        """Per-item scores on every validation and held-out item: {"validation": {task: [...]}, "heldout": {...}}."""
        out: dict[str, dict[str, list[float]]] = {}
        for split in splits:
            out[split] = {}
            for name, task in self.tasks.items():
                scores = task.score_validation(model) if split == "validation" else task.score_heldout(model)
                if scores is not None:
                    out[split][name] = [float(v) for v in scores]
        return out

    def _entry(self, model: LoadedModel) -> dict:
        """A model as the report compares it: search estimates and fitness, validation and held-out per item."""
        tasks = self._score(model)
        _, fitness = self._objectives(tasks)
        return {
            "fitness": fitness,
            "tasks": {n: t["estimate"] for n, t in tasks.items()},
            **summarize(self._full_scores(model)),
        }

    def _candidate_seed(self, index: int) -> int:
        return zlib.crc32(f"{self.config.seed}:{index}".encode())

    def _fields(self, x: np.ndarray, index: int, generation: int, member: int) -> dict[str, Any]:
        """What a candidate's record says before it is scored."""
        return dict(
            index=index,
            generation=generation,
            member=member,
            genome=[float(v) for v in x],
            genes=self.genome.values(x),
            merge_yaml=self.genome.to_yaml(x),
            seed=self._candidate_seed(index),
            device=self.merger.merge_device,
        )

    def _twin_record(self, fields: dict[str, Any], twin: CandidateRecord) -> CandidateRecord | None:
        """A copy of an earlier candidate with the same recipe, when its scores serve (None: score this one): its
        seed and device reproduce the tensors it was scored on, and its full scores serve an audit."""
        if not twin.ok:
            return None
        reasons = self._audit_reasons(fields["index"], twin.tasks, twin.fitness)
        if reasons and twin.audit is None:
            return None
        return CandidateRecord(
            **{**fields, "seed": twin.seed, "device": twin.device},
            status="ok",
            objectives=twin.objectives,
            fitness=twin.fitness,
            tasks=twin.tasks,
            cached_from=twin.index,
            audit={**{k: v for k, v in twin.audit.items() if k != "accepted"}, "reason": reasons}
            if reasons and twin.audit
            else None,
        )

    def _job(self, fields: dict[str, Any], audit: bool = False) -> Job:
        """The work of scoring a candidate: its estimator's items, or (the audit) every search item."""
        items = {n: list(range(len(t.item_ids))) for n, t in self.tasks.items()} if audit else self.selection
        return Job(fields["index"], fields["merge_yaml"], fields["seed"], items, audit)

    def _completed(
        self, outcome: Outcome, flight: dict[int, dict[str, Any]], executor: Executor
    ) -> CandidateRecord | None:
        """The record an outcome completes; None when the candidate is audited and its follow-up job was sent."""
        entry = flight.pop(outcome.job.index)
        fields = {**entry["fields"], "device": outcome.device, "worker": outcome.worker}
        seconds = round(entry.get("seconds", 0.0) + outcome.seconds, 3)
        if outcome.scores is None:
            return CandidateRecord(**fields, status="failed", error=outcome.error, seconds=seconds)
        if outcome.job.audit:
            tasks, objectives, fitness, reasons = entry["scored"]
            items = {name: [float(v) for v in scores] for name, scores in outcome.scores.items()}
            means = {name: float(np.mean(v)) for name, v in items.items()}
            audit = {"reason": reasons, "tasks": means, "fitness": self._weighted_mean(means), "items": items}
            return CandidateRecord(
                **fields,
                status="ok",
                objectives=objectives,
                fitness=fitness,
                tasks=tasks,
                seconds=seconds,
                audit=audit,
            )
        tasks = self._estimated(outcome.scores)
        objectives, fitness = self._objectives(tasks)
        if not np.isfinite([fitness, *objectives]).all():  # never ranked, never told: a failure, kept with its scores
            error = f"estimator {self.config.estimator.name} gave a non-finite estimate ({fitness})"
            return CandidateRecord(**fields, status="failed", error=error, tasks=tasks, seconds=seconds)
        reasons = self._audit_reasons(outcome.job.index, tasks, fitness)
        if reasons:  # decided here, on the running best as it stands when the result arrives
            flight[outcome.job.index] = {**entry, "seconds": seconds, "scored": (tasks, objectives, fitness, reasons)}
            executor.submit(self._job(fields, audit=True), prefer=outcome.worker)
            return None
        return CandidateRecord(
            **fields, status="ok", objectives=objectives, fitness=fitness, tasks=tasks, seconds=seconds
        )

    # ------------------------------------------------------------------------------ the audit

    def _audit_reasons(self, index: int, tasks: dict[str, dict], fitness: float | None) -> list[str]:
        """Why this candidate is also scored on every search item: its index fell in the audited share, and/or its
        estimate would make it the running best."""
        if self.audit is None or fitness is None:
            return []
        by = self.config.best_by
        estimate = fitness if by == "weighted" else tasks[by]["estimate"]
        return audit_reasons(self.audit, self.config.seed, index, estimate, self.running)

    def _estimates_from(self, items: dict[str, list[float]]) -> dict[str, float]:
        """What the estimator, as fitted now, makes of a candidate whose every search item was scored."""
        out = {}
        for name, indices in self.selection.items():
            scores = np.asarray(items[name], dtype=float)
            out[name] = self._estimate(name, indices, scores[indices])
        return out

    def _refit_if_drifting(self, records: list[CandidateRecord], generation: int, state: dict) -> None:
        """At a generation's end: refit an estimator that learns when its error on the candidates audited since
        its last fit passes `refit_error`; log and keep the error before and after (on those same candidates)."""
        assert self.audit is not None and self.audit.refit_error is not None
        before = drift(records, state["since"], self.audit.refit_error, self.audit.refit_min)
        if before is None:
            return
        recent = audited(records, since=state["since"])
        data: list[Scores] = [
            {n: np.asarray(v, dtype=float) for n, v in r.audit["items"].items()}
            for r in audited(records)
            if r.audit is not None
        ]
        kept = self.estimator.get_state()
        try:
            changed = self.estimator.refit(data)
        except Exception as e:  # a fit that fails leaves the estimate as it was; the search goes on
            if kept is not None:
                self.estimator.set_state(kept)
            self.log(f"refit {self.config.estimator.name} failed ({type(e).__name__}: {e}); keeping its current fit")
            return
        if not changed:
            return
        self._write_calibration()
        for name, task in self.tasks.items():
            if [int(i) for i in self.estimator.select(name, len(task.item_ids))] != self.selection[name]:
                raise RuntimeError(f"estimator {self.config.estimator.name} changed the items of {name} when refitting")
        after = float(
            np.mean(
                [
                    abs(estimate - r.audit["tasks"][name])
                    for r in recent
                    if r.audit is not None
                    for name, estimate in self._estimates_from(r.audit["items"]).items()
                ]
            )
        )
        event = {
            "generation": generation,
            "trained_on": len(data),
            "judged_on": len(recent),
            "error_before": before,
            "error_after": after,
        }
        state["refits"] = [e for e in state["refits"] if e["generation"] != generation] + [event]
        state["since"] = 1 + max(r.index for r in records)
        self.log(
            f"refit {self.config.estimator.name} on {len(data)} audited candidates at generation {generation}: "
            f"its error on the {len(recent)} audited since its last fit went from {100 * before:.1f} to "
            f"{100 * after:.1f} points"
        )

    def _write_audit(self, records: list[CandidateRecord], state: dict) -> dict:
        figures = {**summary(records, self.config.best_by), "refits": state["refits"]}
        self.store.write_json(RunStore.AUDIT, figures)
        return figures

    # ------------------------------------------------------------------------------ inputs

    def score_inputs(self) -> dict[str, dict]:
        """The input models on the same items (and validation and held-out items), scored once into inputs.json."""
        inputs = self.store.read_json(RunStore.INPUTS) or {}
        for ref in self.config.input_refs():
            if "items" in inputs.get(ref, {}):  # runs of earlier versions kept no per-item scores: score again
                continue
            self.log(f"scoring input model {ref}")
            with self.merger.input_model(ref) as model:
                inputs[ref] = self._entry(model)
            self.store.write_json(RunStore.INPUTS, inputs)
        return inputs

    def score_baselines(self) -> dict[str, dict]:
        """The plain merges (baselines.py) scored like the inputs, kept in baselines.json; a recipe that fails is
        recorded with its error. An entry is reused while its recipe is unchanged."""
        saved = self.store.read_json(RunStore.BASELINES) or {}
        out = {}
        for name, recipe in self.baselines.items():
            text = yaml.safe_dump(recipe, sort_keys=False)
            if saved.get(name, {}).get("recipe") == text:
                out[name] = saved[name]
                continue
            self.log(f"scoring baseline {name}")
            try:
                with self.merger.merged(parse_merge_config(text), seed=self.config.seed) as model:
                    out[name] = {"recipe": text, "seed": self.config.seed, **self._entry(model)}
            except Exception as e:  # a baseline that cannot be merged is reported, not fatal
                out[name] = {"recipe": text, "error": f"{type(e).__name__}: {e}"}
            self.store.write_json(RunStore.BASELINES, out)
        if out != saved:
            self.store.write_json(RunStore.BASELINES, out)
        return out

    # ------------------------------------------------------------------------------ the loop

    def _budget_left(self, n_records: int, generation: int, seconds: float) -> bool:
        b = self.config.budget
        return not (
            (b.max_evaluations is not None and n_records >= b.max_evaluations)
            or (b.max_generations is not None and generation >= b.max_generations)
            or (b.max_seconds is not None and seconds >= b.max_seconds)
        )

    def run(self, progress: bool = True) -> RunResult:
        """Search until the budget is spent, recording every candidate; the run's lock is given up on return."""
        try:
            return self._run(progress)
        finally:
            self.close()

    def _run(self, progress: bool) -> RunResult:
        self.log(self.genome.describe())
        self.log(self.merger.describe())
        executor = self.executor_cls(options=self.config.executor.options)
        self.log(executor.describe())
        self.notifier = Notifier.build(self.config, self.reg, self.pm, self.store.path, self.log)
        materialize_sources(self.config, self.log)  # PS+DFS: the merged sources, before any worker reads them
        finished = False
        try:
            # started first: workers elsewhere load the sources while this process scores the inputs, and a worker that
            # cannot load them stops the run before any of that work
            executor.start(
                WorkerSpec(
                    self.config,
                    type(self.merger),
                    self.backends,
                    self.genome.to_yaml(self.genome.initial_point()),
                ),
                Worker(self.merger, self.tasks),
                self.log,
            )
            result = self._search(executor, progress)
            finished = True
            return result
        finally:
            executor.close()
            self.notifier.close(finished)

    def _search(self, executor: Executor, progress: bool) -> RunResult:
        self.store.write_json(RunStore.GENOME, {"genes": self.genome.layout()})
        self._select_items(progress)
        recorded = self.store.read_records()
        if not recorded.lines:  # a plugin's broken ask is refused before anything is scored
            self._asked(self._new_optimizer())
        inputs = self.score_inputs()
        records = recorded.rows
        # every complete line was an evaluation, readable or not: the budget counts them, new indices go past them
        evaluations = recorded.lines
        indices = _Indices(records, self.store.next_index(recorded), clean=recorded.lines == len(records))
        if self.audit is not None and not self._cheap():
            self.log("estimator.audit: the estimate already uses every search item; nothing to audit")
            self.audit = None
        audit_state: dict[str, Any] = {"since": 0, "refits": []}  # the estimator's fit is used from `since` on
        checkpoint = self.store.latest_checkpoint()  # a resumed run's log and checkpoints were checked (_check_log)
        if checkpoint is None:
            generation, elapsed = 0, 0.0
            self.store.save_checkpoint(0, {"elapsed": 0.0})
        else:
            generation, state = checkpoint
            if state.get("legacy"):
                self.log(
                    f"checkpoint gen-{generation:04d}.pkl comes from an earlier version: pickles are never opened, so "
                    "the optimizer is rebuilt from the records; its time budget restarts from the records' seconds"
                    + ("" if self.audit is None else ", and an audited estimator's refits are not restored")
                )
                state = {"elapsed": float(sum(r.seconds for r in records))}
                # a checkpoint N was written once generations before N were complete: never past the records
                generation = min(generation, 1 + max((r.generation for r in records), default=-1))
            elapsed = float(state.get("elapsed", 0.0))
            if state.get("estimator") is not None:
                self.estimator.set_state(state["estimator"])
            audit_state = state.get("audit") or audit_state
            self.log(f"resuming at generation {generation} with {len(records)} recorded candidates")
        self._write_calibration()  # once the estimator's fit is the one the search goes on with
        optimizer = self.replayed_optimizer(records, generation)
        by_position = {(r.generation, r.member): r for r in records}
        by_yaml = {r.merge_yaml: r for r in records if r.ok}
        started = time.perf_counter() - elapsed
        self.running = RunningBest(self.config.best_by, guarded=self.audit is not None and guarded(self.config))
        for seen in records:  # the same decisions, in the same order (the order they were recorded), as first made
            self.running.offer(seen)
        best = self.running.best
        asynchronous = bool(getattr(self.optimizer_cls, "asynchronous", False))
        n_objectives = len(self.config.objective_names())

        open_generations: dict[int, _Generation] = {}  # asked and not yet told, by number
        queue: deque[tuple[int, int]] = deque()  # (generation, member) asked, unrecorded, not yet sent
        flight: dict[int, dict[str, Any]] = {}  # index -> the candidate's fields, while its job is out
        sending: dict[str, int] = {}  # merge_yaml -> the index of the job out for it
        waiting: dict[str, list[tuple[int, int]]] = {}  # merge_yaml -> members waiting for that job's record
        to_ask = to_tell = generation

        def record_new(record: CandidateRecord) -> None:
            nonlocal evaluations
            if record.audit is not None and NEW_BEST in record.audit["reason"]:
                record = dataclasses.replace(record, audit={**record.audit, "accepted": self.running.accepts(record)})
            evaluations += 1
            self.store.append(record)
            records.append(record)
            by_position[(record.generation, record.member)] = record
            if record.ok:
                by_yaml.setdefault(record.merge_yaml, record)
            self.notifier.candidate_scored(record)
            sent = sending.pop(record.merge_yaml, None)
            if sent == record.index:  # members with the same recipe go next, as copies of it where it scored
                queue.extendleft(reversed(waiting.pop(record.merge_yaml, [])))
            placed(record)

        def placed(record: CandidateRecord) -> None:
            nonlocal best
            open_gen = open_generations[record.generation]
            if record.ok:
                open_gen.fitness[record.member] = record.objectives
            self.running.offer(record)
            if self.running.best is not best:
                best = self.running.best
                assert best is not None
                self.store.write_text(RunStore.BEST, best.merge_yaml)
            open_gen.bar.update(1)
            open_gen.bar.set_postfix(
                best=f"{score_by(best, self.config.best_by):.4f}" if best else "-",
                failed=sum(not r.ok for r in records),
            )

        def send() -> None:
            """Members to workers while one is free; a recipe already scored is copied, one being scored waits."""
            while queue and executor.pending < executor.workers:
                g, m = queue.popleft()
                fields = self._fields(open_generations[g].xs[m], indices.of(g, m), g, m)
                text = fields["merge_yaml"]
                if text in sending:
                    waiting.setdefault(text, []).append((g, m))
                    continue
                twin = by_yaml.get(text)
                copy = self._twin_record(fields, twin) if twin is not None else None
                if copy is not None:
                    record_new(copy)
                    continue
                flight[fields["index"]] = {"fields": fields}
                sending[text] = fields["index"]
                executor.submit(self._job(fields))

        def may_ask() -> bool:
            unrecorded = sum(
                (g, m) not in by_position for g, open_gen in open_generations.items() for m in range(len(open_gen.xs))
            )
            if not self._budget_left(evaluations + unrecorded, to_ask, time.perf_counter() - started):
                return False
            if not open_generations:
                return True
            # an optimizer whose asks never wait on its tells: the next generation starts while this one finishes
            return asynchronous and not queue and executor.pending < executor.workers and len(open_generations) < 2

        def ask() -> None:
            nonlocal to_ask
            xs = self._asked(optimizer)
            bar = tqdm(total=len(xs), desc=f"generation {to_ask}", disable=not progress, leave=True)
            open_generations[to_ask] = _Generation(xs, np.full((len(xs), n_objectives), np.nan), bar)
            for member in range(len(xs)):
                record = by_position.get((to_ask, member))
                if record is None:
                    indices.plan(to_ask, member)
                    queue.append((to_ask, member))
                else:
                    placed(record)
            to_ask += 1

        def tell_complete() -> None:
            nonlocal to_tell
            while to_tell in open_generations and all(
                (to_tell, m) in by_position for m in range(len(open_generations[to_tell].xs))
            ):
                done = open_generations.pop(to_tell)
                done.bar.close()
                members = [by_position[(to_tell, m)] for m in range(len(done.xs))]
                tell(optimizer, done.xs, done.fitness, functools.partial(self._item_scores, members))
                if self.audit is not None:
                    if self.audit.refit_error is not None:
                        self._refit_if_drifting(records, to_tell, audit_state)
                    self.log(describe(self._write_audit(records, audit_state)))
                to_tell += 1
                self.store.save_checkpoint(
                    to_tell,
                    {
                        "elapsed": time.perf_counter() - started,
                        "estimator": self.estimator.get_state(),
                        "audit": audit_state,
                    },
                )
                self.notifier.generation_end(to_tell - 1, members)

        try:
            while True:
                tell_complete()
                if may_ask():
                    ask()
                    send()
                    continue
                if not executor.pending:
                    break
                record = self._completed(executor.next_outcome(), flight, executor)
                if record is not None:
                    record_new(record)
                send()
        finally:
            for open_gen in open_generations.values():
                open_gen.bar.close()
        executor.close()  # the local worker lets go of its model before the run's end merges candidates again
        return self.finish(records, inputs)

    def _new_optimizer(self) -> Any:
        return self.optimizer_cls(
            dim=self.genome.dim,
            n_objectives=len(self.config.objective_names()),
            seed=self.config.seed,
            population=self.config.optimizer.population,
            options=self.config.optimizer.options,
            x0=self.genome.initial_point(),
            steps=self.genome.unit_steps(),
            depths=self.genome.depths(),
        )

    def _asked(self, optimizer: Any) -> np.ndarray:
        """The optimizer's next generation, checked: a plugin's wrong shape, non-finite value or value outside the
        unit cube is one line naming it (a rounding error of at most 1e-9 is clipped)."""
        name = f"optimizer {self.config.optimizer.name!r}"
        try:
            xs = np.asarray(optimizer.ask(), dtype=float)
        except (TypeError, ValueError) as e:
            raise RunFailure(f"{name}: ask() did not return numbers ({e}); report it to the plugin's authors") from None
        if xs.ndim != 2 or xs.shape[1] != self.genome.dim or len(xs) == 0:
            raise RunFailure(
                f"{name}: ask() returned an array of shape {xs.shape}; the interface wants (population, "
                f"{self.genome.dim}), one row per candidate; report it to the plugin's authors"
            )
        if not np.isfinite(xs).all():
            raise RunFailure(f"{name}: ask() returned a non-finite gene; report it to the plugin's authors")
        if xs.min() < -1e-9 or xs.max() > 1 + 1e-9:
            raise RunFailure(
                f"{name}: ask() returned genes outside [0, 1] (from {xs.min():.6g} to {xs.max():.6g}); every gene "
                "lives in the unit cube; report it to the plugin's authors"
            )
        return np.clip(xs, 0.0, 1.0)

    def replayed_optimizer(self, records: list[CandidateRecord], generations: int) -> Any:
        """A new optimizer, seeded as the run's, told the recorded generations before `generations` again.

        This is how a run resumes without storing the optimizer: an optimizer is deterministic given its seed, its
        options and what it is told (the plugin contract, `Optimizer`'s docstring), so asking and telling it the
        recorded generations in order puts it exactly where the run stood. Each replayed ask is compared with the
        genomes on record, so an optimizer that does not reproduce its run is refused rather than followed.
        """
        optimizer = self._new_optimizer()
        by_position = {(r.generation, r.member): r for r in records}
        for generation in range(generations):
            xs = self._asked(optimizer)
            members: list[CandidateRecord | None] = []
            for member, x in enumerate(xs):
                record = by_position.get((generation, member))
                if record is None:  # its line cannot be read (reported above): told as a failure, and said so
                    self.log(
                        f"generation {generation} member {member} has no readable record: the optimizer is told it "
                        "failed, so from here it may propose other candidates than the run first did (restore the "
                        "line to resume exactly)"
                    )
                    members.append(None)
                    continue
                if record.genome != [float(v) for v in x]:
                    raise UserError(
                        f"{self.store.path}: optimizer {self.config.optimizer.name} proposes other candidates than "
                        f"recorded (generation {generation}, member {member}) when its records are replayed; resume "
                        "with the plugin version that wrote the run, or start a new run"
                    )
                members.append(record)
            fitness = np.full((len(xs), len(self.config.objective_names())), np.nan)
            for record in members:  # as the loop fills a generation: failed members stay NaN
                if record is not None and record.ok:
                    fitness[record.member] = record.objectives
            tell(optimizer, xs, fitness, functools.partial(self._item_scores, members))
        return optimizer

    def _item_scores(self, members: Sequence[CandidateRecord | None]) -> np.ndarray:
        """A generation's scores on each selected item, every task's items side by side in config order (the same
        items for every candidate); a failed candidate's row (or an unreadable one's) is NaN."""
        width = sum(len(self.selection[name]) for name in self.tasks)
        rows = np.full((len(members), width), np.nan)
        for row, record in zip(rows, members):
            if record is not None and record.ok:
                row[:] = np.concatenate([np.asarray(record.tasks[name]["scores"], dtype=float) for name in self.tasks])
        return rows

    # ------------------------------------------------------------------------------ the end: choice and evidence

    def _cheap(self) -> bool:
        """Whether some task is estimated from fewer than all its search items (subsample, IRT anchors)."""
        return any(len(self.selection[name]) < len(task.item_ids) for name, task in self.tasks.items())

    def _finalist_scores(self, record: CandidateRecord, cheap: bool, validation: bool) -> dict[str, dict]:
        """A finalist's per-item scores on all search items (when the estimate was cheap) and on validation items,
        merged once for both and kept in full_search.json and validation.json, so a resumed end re-scores nothing."""
        key = str(record.index)
        full = self.store.read_json(RunStore.FULL_SEARCH) or {}
        held = self.store.read_json(RunStore.VALIDATION) or {}
        if cheap and key not in full and record.audit is not None:  # the audit scored it on every item already
            full[key] = record.audit["items"]
            self.store.write_json(RunStore.FULL_SEARCH, full)
        need = [
            what
            for what, on in (
                ("all search items", cheap and key not in full),
                ("the validation items", validation and key not in held),
            )
            if on
        ]
        if need:
            self.log(f"scoring candidate {record.index} on {' and '.join(need)}")
            with self.merger.merged(self.genome.to_merge_config(np.asarray(record.genome)), seed=record.seed) as model:
                if cheap and key not in full:
                    full[key] = {n: [float(v) for v in scores] for n, scores in self._score_fully(model).items()}
                    self.store.write_json(RunStore.FULL_SEARCH, full)
                if validation and key not in held:
                    held[key] = self._full_scores(model, ("validation",))["validation"]
                    self.store.write_json(RunStore.VALIDATION, held)
        return {"full_search": full.get(key, {}), "validation": held.get(key, {})}

    def final_selection(self) -> Selection:
        """How this run chooses its final merge (`finale.Selection`)."""
        return Selection(
            by=self.config.best_by,
            guard=guarded(self.config),
            weights=self.weights,
            top_k=self.config.selection.top_k,
            cheap=self._cheap(),
            validation=any(t.has_validation for t in self.config.tasks),
        )

    def choose(self, records: list[CandidateRecord]) -> tuple[CandidateRecord | None, list[dict]]:
        """The final merge (`finale.choose`), once each finalist is scored on what the choice needs."""
        selection = self.final_selection()
        scores = {
            r.index: self._finalist_scores(r, selection.cheap, selection.validation)
            for r in finalists(records, selection)
        }
        return choose(records, selection, scores)

    def _best_scores(self, best: CandidateRecord) -> dict:
        saved = self.store.read_json(RunStore.BEST_HELDOUT)
        if saved is not None and saved.get("index") == best.index and "items" in saved:
            return saved
        with self.merger.merged(self.genome.to_merge_config(np.asarray(best.genome)), seed=best.seed) as model:
            scores = summarize(self._full_scores(model))
        return {"index": best.index, "scores": scores["heldout"], **scores}

    def _comparisons(self, best_scores: dict, inputs: dict, baselines: dict) -> dict[str, dict[str, dict]]:
        """The best merge against each parent and baseline on every held-out item, task by task."""
        others = {input_label(ref): p for ref, p in inputs.items()}
        others.update({baseline_label(name): b for name, b in baselines.items() if "items" in b})
        out: dict[str, dict[str, dict]] = {}
        for label, other in others.items():
            for task, scores in best_scores["items"]["heldout"].items():
                theirs = other["items"]["heldout"].get(task)
                if theirs is not None and len(theirs) == len(scores):
                    out.setdefault(label, {})[task] = compare(scores, theirs, self.config.seed).to_json()
        return out

    def _warning(self, best_scores: dict, inputs: dict, baselines: dict) -> str | None:
        """One line when the chosen merge does worse on held-out items than a parent or a plain merge."""
        mine = self._weighted_mean(best_scores["heldout"])
        if mine is None:
            return None
        others = {input_label(ref): p for ref, p in inputs.items()}
        others.update({baseline_label(name): b for name, b in baselines.items() if "heldout" in b})
        means = {label: self._weighted_mean(o["heldout"]) for label, o in others.items()}
        scored = {label: f for label, f in means.items() if f is not None}
        if not scored:
            return None
        label, theirs = max(scored.items(), key=lambda kv: kv[1])
        if mine >= theirs:
            return None
        return (
            f"warning: on held-out items the chosen merge ({mine:.4f}) is below {label}: {theirs:.4f}; "
            "the search may have overfit its items: try validation items, more items or a cheaper genome"
        )

    def finish(self, records: list[CandidateRecord], inputs: dict[str, dict]) -> RunResult:
        best, finalists = self.choose(records)
        baselines = self.score_baselines()
        best_scores, comparisons, warning = None, {}, None
        if best is not None:
            self.store.write_text(RunStore.BEST, best.merge_yaml)
            best_scores = self._best_scores(best)
            comparisons = self._comparisons(best_scores, inputs, baselines)
            warning = self._warning(best_scores, inputs, baselines)
            self.store.write_json(RunStore.BEST_HELDOUT, {**best_scores, "comparisons": comparisons})
            if warning:
                self.log(warning)
            if self.config.write_best_model:
                from mergekit_evo.merging import write_candidate_model

                target = self.store.file(RunStore.BEST_MODEL)
                with self.store.writing(target):
                    self.log(write_candidate_model(best.merge_yaml, best.seed, best.device, target))
        front = None
        if self.config.objectives == "separate":
            front = pareto_front(records)
            write_front(self.store, front, self.config.objective_names())
        result = RunResult(
            self.store.path,
            best,
            inputs,
            best_scores["heldout"] if best_scores else None,
            records,
            front,
            baselines,
            best_scores,
            finalists,
            comparisons,
            warning,
            self.store.read_json(RunStore.AUDIT) if self.audit is not None else None,
        )
        self.store.write_text(RunStore.REPORT, report(result, self.config))
        view = load_view(self.store.path, log=lambda _: None)  # what it cannot read, the run has already reported
        self.store.write_text(RunStore.REPORT_HTML, report_html(view))
        self.notifier.run_end(best)
        return result


def summarize(per_item: dict[str, dict[str, list[float]]]) -> dict:
    """Per-item scores by split, and their means: {"items": per_item, "validation": {task: mean}, "heldout": ...}."""
    means = {split: {task: float(np.mean(v)) for task, v in tasks.items()} for split, tasks in per_item.items()}
    return {"items": per_item, **means}
