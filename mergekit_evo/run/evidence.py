"""What a run shows for its choice: the input models and the plain merges scored like any candidate, the finalists
rescored on what the choice needs (`finale.choose` decides), the chosen merge against each on held-out items, and the
files and reports that say so. Everything it scores is kept, so a resumed end re-scores nothing."""

from __future__ import annotations

import numpy as np
import yaml

from mergekit_evo.merge.base import parse_merge_config, write_candidate_model
from mergekit_evo.rank.pareto import pareto_front, write_front
from mergekit_evo.rank.ranking import baseline_label, guarded, input_label
from mergekit_evo.rank.significance import compare
from mergekit_evo.run.context import RunContext
from mergekit_evo.run.finale import Selection, choose, finalists
from mergekit_evo.run.fitness import Fitness
from mergekit_evo.store.result import RunResult, summarize
from mergekit_evo.store.runs import CandidateRecord, RunStore
from mergekit_evo.views.observers import Notifier
from mergekit_evo.views.report import report
from mergekit_evo.views.report_html import report_html
from mergekit_evo.views.run_view import load_view


class Evidence:
    def __init__(self, ctx: RunContext, fitness: Fitness):
        self.ctx = ctx
        self.fitness = fitness

    # ------------------------------------------------------------------------------ what the merge is compared with

    def score_inputs(self) -> dict[str, dict]:
        """The input models on the same items (and validation and held-out items), scored once into inputs.json."""
        store = self.ctx.store
        inputs = store.read_json(RunStore.INPUTS) or {}
        for ref in self.ctx.config.input_refs():
            if "items" in inputs.get(ref, {}):
                continue
            self.ctx.log(f"scoring input model {ref}")
            with self.ctx.merger.input_model(ref) as model:
                inputs[ref] = self.fitness.entry(model)
            store.write_json(RunStore.INPUTS, inputs)
        return inputs

    def score_baselines(self) -> dict[str, dict]:
        """The plain merges (baselines.py) scored like the inputs, kept in baselines.json; a recipe that fails is
        recorded with its error. An entry is reused while its recipe is unchanged."""
        ctx = self.ctx
        saved = ctx.store.read_json(RunStore.BASELINES) or {}
        out = {}
        for name, recipe in ctx.baselines.items():
            text = yaml.safe_dump(recipe, sort_keys=False)
            if saved.get(name, {}).get("recipe") == text:
                out[name] = saved[name]
                continue
            ctx.log(f"scoring baseline {name}")
            try:
                with ctx.merger.merged(parse_merge_config(text), seed=ctx.config.seed) as model:
                    out[name] = {"recipe": text, "seed": ctx.config.seed, **self.fitness.entry(model)}
            except Exception as e:  # a baseline that cannot be merged is reported, not fatal
                out[name] = {"recipe": text, "error": f"{type(e).__name__}: {e}"}
            ctx.store.write_json(RunStore.BASELINES, out)
        if out != saved:
            ctx.store.write_json(RunStore.BASELINES, out)
        return out

    # ------------------------------------------------------------------------------ the choice

    def final_selection(self) -> Selection:
        """How this run chooses its final merge (`finale.Selection`)."""
        config = self.ctx.config
        return Selection(
            by=config.best_by,
            guard=guarded(config),
            weights=self.ctx.weights,
            top_k=config.selection.top_k,
            cheap=self.ctx.cheap(),
            validation=any(t.has_validation for t in config.tasks),
        )

    def finalist_scores(self, record: CandidateRecord, cheap: bool, validation: bool) -> dict[str, dict]:
        """A finalist's per-item scores on all search items (when the estimate was cheap) and on validation items,
        merged once for both and kept in full_search.json and validation.json, so a resumed end re-scores nothing."""
        store = self.ctx.store
        key = str(record.index)
        full = store.read_json(RunStore.FULL_SEARCH) or {}
        held = store.read_json(RunStore.VALIDATION) or {}
        if cheap and key not in full and record.audit is not None:  # the audit scored it on every item already
            full[key] = record.audit["items"]
            store.write_json(RunStore.FULL_SEARCH, full)
        need = [
            what
            for what, on in (
                ("all search items", cheap and key not in full),
                ("the validation items", validation and key not in held),
            )
            if on
        ]
        if need:
            self.ctx.log(f"scoring candidate {record.index} on {' and '.join(need)}")
            recipe = self.ctx.genome.to_merge_config(np.asarray(record.genome))
            with self.ctx.merger.merged(recipe, seed=record.seed) as model:
                if cheap and key not in full:
                    full[key] = {n: [float(v) for v in s] for n, s in self.fitness.score_fully(model).items()}
                    store.write_json(RunStore.FULL_SEARCH, full)
                if validation and key not in held:
                    held[key] = self.fitness.full_scores(model, ("validation",))["validation"]
                    store.write_json(RunStore.VALIDATION, held)
        return {"full_search": full.get(key, {}), "validation": held.get(key, {})}

    def choose(self, records: list[CandidateRecord]) -> tuple[CandidateRecord | None, list[dict]]:
        """The final merge (`finale.choose`), once each finalist is scored on what the choice needs."""
        selection = self.final_selection()
        scores = {
            r.index: self.finalist_scores(r, selection.cheap, selection.validation)
            for r in finalists(records, selection)
        }
        return choose(records, selection, scores)

    # ------------------------------------------------------------------------------ the chosen merge on held-out items

    def best_scores(self, best: CandidateRecord) -> dict:
        saved = self.ctx.store.read_json(RunStore.BEST_HELDOUT)
        if saved is not None and saved.get("index") == best.index and "items" in saved:
            return saved
        recipe = self.ctx.genome.to_merge_config(np.asarray(best.genome))
        with self.ctx.merger.merged(recipe, seed=best.seed) as model:
            scores = summarize(self.fitness.full_scores(model))
        return {"index": best.index, "scores": scores["heldout"], **scores}

    @staticmethod
    def _others(inputs: dict, baselines: dict, needs: str) -> dict[str, dict]:
        """The parents and the plain merges that have `needs` in their entry, by their labels."""
        others = {input_label(ref): p for ref, p in inputs.items()}
        others.update({baseline_label(name): b for name, b in baselines.items() if needs in b})
        return others

    def comparisons(self, best_scores: dict, inputs: dict, baselines: dict) -> dict[str, dict[str, dict]]:
        """The best merge against each parent and baseline on every held-out item, task by task."""
        out: dict[str, dict[str, dict]] = {}
        for label, other in self._others(inputs, baselines, "items").items():
            for task, scores in best_scores["items"]["heldout"].items():
                theirs = other["items"]["heldout"].get(task)
                if theirs is not None and len(theirs) == len(scores):
                    out.setdefault(label, {})[task] = compare(scores, theirs, self.ctx.config.seed).to_json()
        return out

    def warning(self, best_scores: dict, inputs: dict, baselines: dict) -> str | None:
        """One line when the chosen merge does worse on held-out items than a parent or a plain merge."""
        mine = self.ctx.weighted_mean(best_scores["heldout"])
        if mine is None:
            return None
        means = {
            label: self.ctx.weighted_mean(o["heldout"])
            for label, o in self._others(inputs, baselines, "heldout").items()
        }
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

    def finish(self, records: list[CandidateRecord], inputs: dict[str, dict], notifier: Notifier) -> RunResult:
        """The run's end: the choice, its evidence, best.yaml (and the model when asked), the reports."""
        ctx, store = self.ctx, self.ctx.store
        best, finalists = self.choose(records)
        baselines = self.score_baselines()
        best_scores, comparisons, warning = None, {}, None
        if best is not None:
            store.write_text(RunStore.BEST, best.merge_yaml)
            best_scores = self.best_scores(best)
            comparisons = self.comparisons(best_scores, inputs, baselines)
            warning = self.warning(best_scores, inputs, baselines)
            store.write_json(RunStore.BEST_HELDOUT, {**best_scores, "comparisons": comparisons})
            if warning:
                ctx.log(warning)
            if ctx.config.write_best_model:
                target = store.file(RunStore.BEST_MODEL)
                with store.writing(target):
                    ctx.log(write_candidate_model(best.merge_yaml, best.seed, best.device, target))
        front = None
        if ctx.config.objectives == "separate":
            front = pareto_front(records)
            write_front(store, front, ctx.config.objective_names())
        result = RunResult(
            run_dir=store.path,
            best=best,
            inputs=inputs,
            best_heldout=best_scores["heldout"] if best_scores else None,
            records=records,
            pareto=front,
            baselines=baselines,
            best_scores=best_scores,
            finalists=finalists,
            comparisons=comparisons,
            warning=warning,
            audit=store.read_json(RunStore.AUDIT) if ctx.audit is not None else None,
        )
        store.write_text(RunStore.REPORT, report(result, ctx.config))
        view = load_view(store.path, log=lambda _: None)  # what it cannot read, the run has already reported
        store.write_text(RunStore.REPORT_HTML, report_html(view))
        notifier.run_end(best)
        return result
