"""A candidate's fitness, in one place: the items drawn for each task, the candidate scored on them and estimated,
its record made from an executor's outcome, the audit that scores some candidates on every search item as well,
and the refit of an estimator whose error on the audited candidates drifts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mergekit_evo.estimate.audit import audited, drift, summary
from mergekit_evo.estimate.audit import reasons as audit_reasons
from mergekit_evo.estimate.responses import RunResponses, Scores
from mergekit_evo.merge.base import LoadedModel
from mergekit_evo.plugin.errors import RunFailure, UserError
from mergekit_evo.run.context import RunContext
from mergekit_evo.run.executors import Executor, Job, Outcome
from mergekit_evo.scoring.splits import HeldBack
from mergekit_evo.store.result import summarize
from mergekit_evo.store.runs import CandidateRecord, RunStore


class Fitness:
    """Scores and estimates for one run (`ctx`); the scheduler and the ending ask it, never the estimator."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    # ------------------------------------------------------------------------------ the items

    def select_items(self, progress: bool) -> None:
        """Prepare the estimator, then draw the items per task once; a resumed run checks it draws the same ones."""
        ctx = self.ctx
        ctx.estimator.prepare(
            RunResponses(
                ctx.store,
                {n: t.item_ids for n, t in ctx.tasks.items()},
                ctx.genome.dim,
                ctx.config.seed,
                score_input=self.score_input_fully,
                score_point=self.score_point_fully,
                log=ctx.log,
                progress=progress,
                refs=ctx.config.input_refs(),
                start=ctx.genome.initial_point(),
            )
        )
        selection = {name: self._selected(name, len(task.item_ids)) for name, task in ctx.tasks.items()}
        chosen = {
            name: {"indices": idx, "item_ids": [ctx.tasks[name].item_ids[i] for i in idx]}
            for name, idx in selection.items()
        }
        for name, task in ctx.tasks.items():
            if isinstance(task, HeldBack):
                chosen[name]["validation_ids"] = task.validation_ids
        saved = ctx.store.read_json(RunStore.SELECTION)
        if saved is None:
            ctx.store.write_json(RunStore.SELECTION, chosen)
        elif saved != chosen:
            changed = sorted(n for n in set(saved) | set(chosen) if saved.get(n) != chosen.get(n))
            raise UserError(
                f"{ctx.store.path}: the items scored for {', '.join(changed)} differ from those the run "
                "started with; put the item files back, or start a new run"
            )
        ctx.selection = selection

    def _selected(self, task: str, n_items: int) -> list[int]:
        """The estimator's items for `task`, checked: a plugin's empty, repeated or out-of-range choice is one line
        naming it, before anything is scored."""
        name = f"estimator {self.ctx.config.estimator.name!r}"
        try:
            chosen = [int(i) for i in self.ctx.estimator.select(task, n_items)]
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

    # ------------------------------------------------------------------------------ scores and estimates

    def estimate(self, task: str, indices: list[int], scores: np.ndarray) -> float:
        """The estimator's estimate, checked: a plugin's non-number or non-finite estimate is one line naming it."""
        value = self.ctx.estimator.estimate(task, indices, scores)
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not np.isfinite(number):
            raise RunFailure(
                f"estimator {self.ctx.config.estimator.name!r}: estimate() returned {value!r} for task {task!r}; it "
                "must be a finite number; report it to the plugin's authors"
            )
        return number

    def score_fully(self, model: LoadedModel) -> dict[str, np.ndarray]:
        """Every search item of every task."""
        return {
            name: np.asarray(task.score(model, range(len(task.item_ids))), dtype=float)
            for name, task in self.ctx.tasks.items()
        }

    def score_input_fully(self, ref: str) -> dict[str, np.ndarray]:
        with self.ctx.merger.input_model(ref) as model:
            return self.score_fully(model)

    def score_point_fully(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self.ctx.merger.merged(self.ctx.genome.to_merge_config(x), seed=self.ctx.config.seed) as model:
            return self.score_fully(model)

    def estimated(self, scores: Mapping[str, Sequence[float] | np.ndarray]) -> dict[str, dict]:
        """Per task, the estimator's estimate from the selected items' scores, and those scores."""
        results = {}
        for name, given in scores.items():
            values = np.asarray(given, dtype=float)
            results[name] = {
                "estimate": self.estimate(name, self.ctx.selection[name], values),
                "scores": [float(s) for s in values],
            }
        return results

    def objectives(self, tasks: dict[str, dict]) -> tuple[list[float], float]:
        """The objectives the optimizer is told and the fitness ranked by, from per-task estimates."""
        estimates = {name: tasks[name]["estimate"] for name in self.ctx.tasks}
        fitness = self.ctx.weighted_mean(estimates)
        assert fitness is not None  # the config refuses task weights that sum to 0
        separate = self.ctx.config.objectives != "weighted"
        return ([estimates[n] for n in self.ctx.tasks] if separate else [fitness]), fitness

    def full_scores(self, model: LoadedModel, splits: tuple[str, ...] = ("validation", "heldout")) -> dict:
        """Per-item scores on every validation and held-out item: {"validation": {task: [...]}, "heldout": {...}}."""
        out: dict[str, dict[str, list[float]]] = {}
        for split in splits:
            out[split] = {}
            for name, task in self.ctx.tasks.items():
                scores = task.score_validation(model) if split == "validation" else task.score_heldout(model)
                if scores is not None:
                    out[split][name] = [float(v) for v in scores]
        return out

    def entry(self, model: LoadedModel) -> dict:
        """A model as the report compares it: search estimates and fitness, validation and held-out per item."""
        tasks = self.estimated(
            {name: task.score(model, self.ctx.selection[name]) for name, task in self.ctx.tasks.items()}
        )
        _, fitness = self.objectives(tasks)
        return {
            "fitness": fitness,
            "tasks": {n: t["estimate"] for n, t in tasks.items()},
            **summarize(self.full_scores(model)),
        }

    def item_scores(self, members: Sequence[CandidateRecord | None]) -> np.ndarray:
        """A generation's scores on each selected item, every task's items side by side in config order (the same
        items for every candidate); a failed candidate's row (or an unreadable one's) is NaN."""
        selection = self.ctx.selection
        rows = np.full((len(members), sum(len(selection[name]) for name in self.ctx.tasks)), np.nan)
        for row, record in zip(rows, members):
            if record is not None and record.ok:
                row[:] = np.concatenate(
                    [np.asarray(record.tasks[name]["scores"], dtype=float) for name in self.ctx.tasks]
                )
        return rows

    # ------------------------------------------------------------------------------ records from outcomes

    def job(self, fields: dict[str, Any], audit: bool = False) -> Job:
        """The work of scoring a candidate: its estimator's items, or (the audit) every search item."""
        items = {n: list(range(len(t.item_ids))) for n, t in self.ctx.tasks.items()} if audit else self.ctx.selection
        return Job(fields["index"], fields["merge_yaml"], fields["seed"], items, audit)

    def twin_record(self, fields: dict[str, Any], twin: CandidateRecord) -> CandidateRecord | None:
        """A copy of an earlier candidate with the same recipe, when its scores serve (None: score this one): its
        seed and device reproduce the tensors it was scored on, and its full scores serve an audit."""
        if not twin.ok:
            return None
        reasons = self.audit_reasons(fields["index"], twin.tasks, twin.fitness)
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

    def completed(
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
            audit = {"reason": reasons, "tasks": means, "fitness": self.ctx.weighted_mean(means), "items": items}
            return CandidateRecord(
                **fields, status="ok", objectives=objectives, fitness=fitness, tasks=tasks, seconds=seconds, audit=audit
            )
        tasks = self.estimated(outcome.scores)
        objectives, fitness = self.objectives(tasks)
        if not np.isfinite([fitness, *objectives]).all():  # never ranked, never told: a failure, kept with its scores
            error = f"estimator {self.ctx.config.estimator.name} gave a non-finite estimate ({fitness})"
            return CandidateRecord(**fields, status="failed", error=error, tasks=tasks, seconds=seconds)
        reasons = self.audit_reasons(outcome.job.index, tasks, fitness)
        if reasons:  # decided here, on the running best as it stands when the result arrives
            flight[outcome.job.index] = {**entry, "seconds": seconds, "scored": (tasks, objectives, fitness, reasons)}
            executor.submit(self.job(fields, audit=True), prefer=outcome.worker)
            return None
        return CandidateRecord(
            **fields, status="ok", objectives=objectives, fitness=fitness, tasks=tasks, seconds=seconds
        )

    # ------------------------------------------------------------------------------ the audit and the refit

    def audit_reasons(self, index: int, tasks: dict[str, dict], fitness: float | None) -> list[str]:
        """Why this candidate is also scored on every search item: its index fell in the audited share, and/or its
        estimate would make it the running best."""
        ctx = self.ctx
        if ctx.audit is None or fitness is None:
            return []
        by = ctx.config.best_by
        estimate = fitness if by == "weighted" else tasks[by]["estimate"]
        return audit_reasons(ctx.audit, ctx.config.seed, index, estimate, ctx.running)

    def _estimates_from(self, items: dict[str, list[float]]) -> dict[str, float]:
        """What the estimator, as fitted now, makes of a candidate whose every search item was scored."""
        out = {}
        for name, indices in self.ctx.selection.items():
            scores = np.asarray(items[name], dtype=float)
            out[name] = self.estimate(name, indices, scores[indices])
        return out

    def refit_if_drifting(self, records: list[CandidateRecord], generation: int, state: dict) -> None:
        """At a generation's end: refit an estimator that learns when its error on the candidates audited since
        its last fit passes `refit_error`; log and keep the error before and after (on those same candidates)."""
        ctx = self.ctx
        assert ctx.audit is not None and ctx.audit.refit_error is not None
        before = drift(records, state["since"], ctx.audit.refit_error, ctx.audit.refit_min)
        if before is None:
            return
        recent = audited(records, since=state["since"])
        data: list[Scores] = [
            {n: np.asarray(v, dtype=float) for n, v in r.audit["items"].items()}
            for r in audited(records)
            if r.audit is not None
        ]
        kept = ctx.estimator.get_state()
        try:
            changed = ctx.estimator.refit(data)
        except Exception as e:  # a fit that fails leaves the estimate as it was; the search goes on
            if kept is not None:
                ctx.estimator.set_state(kept)
            ctx.log(f"refit {ctx.config.estimator.name} failed ({type(e).__name__}: {e}); keeping its current fit")
            return
        if not changed:
            return
        self.write_calibration()
        for name, task in ctx.tasks.items():
            if [int(i) for i in ctx.estimator.select(name, len(task.item_ids))] != ctx.selection[name]:
                raise RuntimeError(f"estimator {ctx.config.estimator.name} changed the items of {name} when refitting")
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
        ctx.log(
            f"refit {ctx.config.estimator.name} on {len(data)} audited candidates at generation {generation}: "
            f"its error on the {len(recent)} audited since its last fit went from {100 * before:.1f} to "
            f"{100 * after:.1f} points"
        )

    def write_audit(self, records: list[CandidateRecord], state: dict) -> dict:
        figures = {**summary(records, self.ctx.config.best_by), "refits": state["refits"]}
        self.ctx.store.write_json(RunStore.AUDIT, figures)
        return figures

    def write_calibration(self) -> None:
        """calibration.json: what the estimator, as fitted now, makes of each merge it learned from (its estimate
        from the selected items against the score on all of them), so a view draws it without the plugin."""
        ctx = self.ctx
        if ctx.estimator.get_state() is None or not ctx.store.responses_path.exists():
            return
        points = []
        for row in ctx.store.read_log(ctx.store.responses_path, dict).rows:
            if not str(row.get("key", "")).startswith("merge:"):
                continue
            for task, scores in row["tasks"].items():
                if task in ctx.selection:
                    values = np.asarray(scores, dtype=float)
                    estimate = self.estimate(task, ctx.selection[task], values[ctx.selection[task]])
                    points.append([estimate, float(values.mean()), f"calibration merge, {task}"])
        ctx.store.write_json(RunStore.CALIBRATION, {"points": points})
