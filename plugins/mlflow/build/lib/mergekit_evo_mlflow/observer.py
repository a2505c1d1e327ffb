"""`MlflowObserver`: a mergekit-evo run as one MLflow run.

It logs what the W&B observer logs, with MLflow's spelling: per candidate `candidate.fitness`, `candidate.task.NAME`,
... at step = the candidate's index (MLflow takes steps in any order, as parallel workers record them); per
generation `generation.best`, ... at step = the generation; at the end `best.*` and `heldout.*`, and best.yaml,
report.md, report.html and config.yaml as artifacts. It uses an `MlflowClient` of its own, so a program that runs an
evolution inside its own MLflow run keeps its active run untouched.

The default store is MLflow's: `MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` in the working folder (never the
run directory). The MLflow run is tagged with the run directory's tracking id, so `mergekit-evo resume` finds it and
goes on in it.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from pydantic import BaseModel, Field

from mergekit_evo import CandidateRecord, Observer

TAG = "mergekit_evo.tracking_id"


class MlflowOptions(BaseModel, extra="forbid"):
    tracking_uri: str | None = Field(
        None, description="default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working folder"
    )
    experiment: str = Field("mergekit-evo", description="the MLflow experiment, created when missing")
    artifact_location: str | None = Field(
        None, description="where an experiment created here keeps its artifacts; default: MLflow's (./mlruns)"
    )
    run_name: str | None = Field(None, description="default: the run directory's name")
    tags: dict[str, str] = Field(default_factory=dict)
    log_genes: bool = Field(True, description="log every gene of every candidate")


def metric_name(key: str) -> str:
    """MLflow metric names take letters, digits and `_-. :/`; a gene's `layers[0:4]` becomes `layers_0:4_`."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", key.replace("/", "."))


class MlflowObserver(Observer):
    """Logs every candidate, every generation and the chosen recipe to an MLflow tracking store."""

    Options = MlflowOptions

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # here, not at the top: every installed plugin module is imported whenever plugins are listed
        from mlflow.entities import Metric, Param, RunStatus
        from mlflow.tracking import MlflowClient

        self.Metric, self.RunStatus = Metric, RunStatus
        o = self.options
        uri = o.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(o.experiment)
        if experiment is None:
            experiment_id = self.client.create_experiment(o.experiment, artifact_location=o.artifact_location)
        else:
            experiment_id = experiment.experiment_id
        found = self.client.search_runs([experiment_id], filter_string=f"tags.`{TAG}` = '{self.tracking_id}'")
        if found:  # a resumed run goes on in the MLflow run it started
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            return
        run = self.client.create_run(
            experiment_id, run_name=o.run_name or self.run_dir.name, tags={TAG: self.tracking_id, **o.tags}
        )
        self.run_id = run.info.run_id
        c = self.config
        params = {
            "merge_method": ", ".join(c.methods()),
            "models": ", ".join(c.models),
            "base_model": c.base_model or "",
            "optimizer": c.optimizer.name,
            "population": c.optimizer.population,
            "estimator": c.estimator.name,
            "objectives": c.objectives,
            "tasks": ", ".join(t.name for t in c.tasks),
            "seed": c.seed,
            "run_dir": str(self.run_dir),
        }
        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def _log(self, prefix: str, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[self.Metric(metric_name(f"{prefix}/{k}"), float(v), now, step) for k, v in metrics.items()],
        )

    def on_candidate_scored(self, record: CandidateRecord) -> None:
        metrics = self.candidate_metrics(record)
        if not self.options.log_genes:
            metrics = {k: v for k, v in metrics.items() if not k.startswith("gene/")}
        del metrics["index"]  # the step
        self._log("candidate", metrics, step=record.index)

    def on_generation_end(self, generation: int, records: list[CandidateRecord]) -> None:
        metrics = self.generation_metrics(generation, records)
        del metrics["generation"]  # the step
        self._log("generation", metrics, step=generation)

    def on_run_end(self, best: CandidateRecord | None) -> None:
        if best is not None:
            self._log("best", {"index": best.index, "fitness": best.fitness or 0.0}, step=0)
            self._log("heldout", {k.split("/", 1)[1]: v for k, v in self.heldout().items()}, step=0)
        for path in self.result_files():
            self.client.log_artifact(self.run_id, str(path))

    def close(self, finished: bool) -> None:
        status = self.RunStatus.FINISHED if finished else self.RunStatus.KILLED
        self.client.set_terminated(self.run_id, status=self.RunStatus.to_string(status))
