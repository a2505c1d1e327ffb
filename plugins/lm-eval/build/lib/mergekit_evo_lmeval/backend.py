"""lm-eval-harness tasks as a mergekit-evo task backend: per-item scores, only for the items asked, in memory.

Each search item is one document of the task's evaluation split, identified by its index. A candidate is evaluated
with lm-eval's own `evaluator.evaluate`, restricted to the chosen documents (its `samples` filter), with the merged
model handed over as an object (`HFLM(pretrained=<model>)`), and its per-document metric is read from the sample
log. The task overrides `simple_evaluate` would apply (few-shot count and seed, generation kwargs) are applied once
when the task is loaded; `simple_evaluate` itself is not called per candidate, because it also collects the
environment's description (pip, compilers) every time, about 0.6 s a call. lm-eval's task index (`TaskManager`, seconds to build over ~14,700 built-in tasks) is built once per process for
each set of task folders, and only with the built-in tasks when a task is not found among the user's own.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mergekit_evo import (
    LoadedModel,
    TaskBackend,
    TaskConfig,
    UserError,
    close_matches,
    json_hash,
    parse_plugin_options,
)


class LmEvalOptions(BaseModel):
    """`tasks[i].options` of a task with `backend: lm-eval`."""

    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(None, description="the lm-eval task name; default: the task's `name`")
    include_path: list[Path] = Field(default_factory=list, description="folders of your own lm-eval task YAMLs")
    test_task: str | None = Field(None, description="an lm-eval task scored once for the best merge, as held-out")
    metric: str | None = Field(None, description="the per-item metric used as fitness; default: the task's first")
    filter: str | None = Field(
        None, description="which of the task's filters to read (generation tasks); default: the first"
    )
    num_fewshot: int | None = Field(None, ge=0)
    limit: int | None = Field(None, ge=1, description="only the first `limit` documents are items")
    apply_chat_template: bool = False
    gen_kwargs: dict[str, Any] | None = None
    model: Literal["auto", "hf", "vllm"] = Field("auto", description="hf (in memory), vllm (merged on disk, GPU)")


@functools.lru_cache(maxsize=8)
def task_manager(include_path: tuple[str, ...], include_defaults: bool):
    """lm-eval's task index, built once per set of folders (building it costs seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_path) or None, include_defaults=include_defaults)


def quiet_lm_eval() -> None:
    """lm-eval logs every task load and model wrap at INFO/WARNING; a run shows its own progress instead."""
    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


def vllm_usable() -> bool:
    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


class LmEvalTask(TaskBackend):
    """Any lm-eval-harness task (built-in by name, or your own YAMLs): per-item scores from its sample log."""

    def __init__(self, *, config: TaskConfig):
        super().__init__(config=config)
        field = f"tasks.{config.name}.options"
        self.options: LmEvalOptions = parse_plugin_options(LmEvalOptions, config.options, field)
        os.environ.setdefault("HF_DATASETS_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
        quiet_lm_eval()
        for folder in self.options.include_path:
            if not folder.is_dir():
                raise UserError(f"{field}.include_path: {folder} is not a folder of lm-eval task YAMLs")
        self.name = self.options.task or config.name
        self.task = self._load(self.name, f"{field}.task" if self.options.task else f"tasks.{config.name}.name")
        self.test = self._load(self.options.test_task, f"{field}.test_task") if self.options.test_task else None
        self.metric = self._metric(field)
        self.n_docs = len(self.task.eval_docs)
        if self.options.limit is not None:
            self.n_docs = min(self.n_docs, self.options.limit)
        self.backend = self._backend(field)
        self._lm = None
        self._lm_model = None
        self.evaluated: list[int] = []  # the documents lm-eval scored in the last call
        self.samples: list[dict] = []  # and its sample log, as lm-eval wrote it (responses, log-likelihoods)

    # ------------------------------------------------------------------------------ configuration

    def _load(self, name: str, field: str):
        paths = tuple(str(p.resolve()) for p in self.options.include_path)
        manager = task_manager(paths, include_defaults=not paths)
        if name not in manager.all_tasks and paths:
            manager = task_manager(paths, include_defaults=True)  # not among the user's own: try the built-ins
        if name not in manager.all_tasks:
            raise UserError(f"{field}: lm-eval has no task {name!r}; {_near(name, manager.all_tasks)}")
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # datasets' progress bars
                tasks = list(manager.load([name])["tasks"].values())
        except Exception as e:  # a task whose data cannot be read (offline, missing file) is a config problem
            raise UserError(
                f"{field}: lm-eval could not load {name!r}: {type(e).__name__}: {str(e).splitlines()[0]}"
            ) from None
        if len(tasks) != 1:
            raise UserError(f"{field}: {name!r} is a group of {len(tasks)} tasks; name one task per entry of `tasks`")
        self._apply_overrides(tasks[0])
        return tasks[0]

    def _apply_overrides(self, task) -> None:
        """What `simple_evaluate` does to a task before evaluating it, done once."""
        from lm_eval.defaults import DEFAULT_OTHER_SEED

        if task.get_config("output_type") == "generate_until" and self.options.gen_kwargs:
            task.set_config(key="generation_kwargs", value=self.options.gen_kwargs, update=True)
        if self.options.num_fewshot is not None:
            if task.get_config("num_fewshot") != 0:  # a task that fixes 0 shots keeps them, as in lm-eval
                task.set_config(key="num_fewshot", value=self.options.num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)

    def _metric(self, field: str) -> str:
        better = self.task.higher_is_better()
        metric = self.options.metric or next(iter(better))
        if metric not in better:
            raise UserError(
                f"{field}.metric: {self.name} reports no metric {metric!r}; {close_matches(metric, list(better))}"
            )
        if not better[metric]:
            raise UserError(
                f"{field}.metric: {metric} is lower-is-better, and fitness is maximised; choose one of "
                + ", ".join(m for m, up in better.items() if up)
            )
        return metric

    def _backend(self, field: str) -> str:
        if self.options.model == "vllm" and not vllm_usable():
            raise UserError(f"{field}.model: vllm needs the vllm package and a CUDA GPU, and neither is here; use hf")
        if self.options.model == "auto":
            return "vllm" if vllm_usable() else "hf"
        return self.options.model

    @property
    def item_ids(self) -> list[str]:
        return [str(i) for i in range(self.n_docs)]

    def fingerprint(self) -> dict[str, str]:
        """The documents themselves: lm-eval's item ids are positions, so a changed data set keeps the same ids."""
        hashes = {"search items": json_hash(list(self.task.eval_docs)[: self.n_docs])}
        if self.test is not None:
            hashes["held-out items"] = json_hash(list(self.test.eval_docs))
        return hashes

    # ------------------------------------------------------------------------------ scoring

    def _language_model(self, model: LoadedModel):
        """An lm-eval model over the candidate: HFLM on the object itself (the resident model is reused)."""
        if self.backend == "vllm":
            if model.path is None:
                raise RuntimeError("the vllm backend loads models from disk; use `merger: disk` with it")
            from lm_eval.models.vllm_causallms import VLLM

            return VLLM(pretrained=str(model.path), batch_size="auto")
        if self._lm is None or self._lm_model is not model.model:
            from lm_eval.models.huggingface import HFLM

            self._lm = HFLM(
                pretrained=model.model,
                tokenizer=model.tokenizer,
                # the task's batch_size (64 by default) is HFLM's: it sorts requests longest first, so a batch pads
                # little, and runs a context once for all its single-token continuations (its logits cache)
                batch_size=self.config.batch_size,
                max_batch_size=self.config.batch_size,
                logits_cache=True,
            )
            self._lm_model = model.model
        return self._lm

    def _evaluate(self, model: LoadedModel, task, indices: Sequence[int] | None) -> dict[int, float]:
        from lm_eval.evaluator import evaluate

        name = task.config.task
        paths = tuple(str(p.resolve()) for p in self.options.include_path)
        with contextlib.redirect_stderr(io.StringIO()):  # lm-eval's per-call progress bars
            result = evaluate(
                lm=self._language_model(model),
                task_dict=task_manager(paths, False).load([task]),
                samples=None if indices is None else {name: list(indices)},
                log_samples=True,
                bootstrap_iters=0,
                apply_chat_template=self.options.apply_chat_template,
                fewshot_as_multiturn=True,
            )
        samples = result["samples"][name]
        chosen = self.options.filter or samples[0]["filter"]
        scores = {int(s["doc_id"]): float(s[self.metric]) for s in samples if s["filter"] == chosen}
        self.evaluated = sorted(scores)
        self.samples = [s for s in samples if s["filter"] == chosen]
        return scores

    def score(self, model: LoadedModel, indices: Sequence[int]) -> np.ndarray:
        indices = [int(i) for i in indices]
        every = indices == list(range(len(self.task.eval_docs)))  # the whole task: run it as lm-eval itself would
        scores = self._evaluate(model, self.task, None if every else indices)
        return np.array([scores[i] for i in indices], dtype=float)

    def score_heldout(self, model: LoadedModel) -> np.ndarray | None:
        if self.test is None:
            return None
        scores = self._evaluate(model, self.test, None)
        return np.array([scores[i] for i in sorted(scores)], dtype=float)


def _near(name: str, known: list[str]) -> str:
    import difflib

    near = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    return f"did you mean {', '.join(near)}?" if near else "`lm-eval ls tasks` lists them"
