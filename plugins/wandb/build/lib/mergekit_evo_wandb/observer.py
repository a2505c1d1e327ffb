"""`WandbObserver`: a mergekit-evo run as one W&B run.

Per candidate: its fitness, per-task estimates, objectives and genes under `candidate/...`, plotted against the
candidate's index (`candidate`), since with parallel workers candidates are recorded out of index order and W&B's own
step must only grow. Per generation: the best, mean, spread and best so far under `generation/...`. At the end: the
chosen merge's held-out scores in the summary, and best.yaml, report.md and report.html as one artifact.

The W&B run's id comes from the run directory, so `mergekit-evo resume` goes on in the same W&B run. W&B writes its
files where W&B does (`./wandb`, or `dir:`), never into the run directory. `WANDB_MODE=offline` (or `mode: offline`)
needs no network; `wandb sync` uploads later.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from mergekit_evo import CandidateRecord, Observer


class WandbOptions(BaseModel, extra="forbid"):
    project: str = Field("mergekit-evo", description="the W&B project")
    entity: str | None = Field(None, description="the W&B team or user; default: your default entity")
    name: str | None = Field(None, description="the W&B run's name; default: the run directory's name")
    group: str | None = None
    tags: list[str] = Field(default_factory=list)
    dir: str | None = Field(None, description="where W&B keeps its local files; default: W&B's (./wandb)")
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="default: W&B's own (WANDB_MODE, else online)"
    )
    log_genes: bool = Field(True, description="log every gene of every candidate (many columns for per-layer genomes)")


def _artifact_name(text: str) -> str:
    """W&B artifact names take letters, digits, dashes, underscores and dots."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)


class WandbObserver(Observer):
    """Logs every candidate, every generation and the chosen recipe to Weights & Biases."""

    Options = WandbOptions

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        import wandb  # here, not at the top: every installed plugin module is imported whenever plugins are listed

        self.wandb = wandb
        o = self.options
        self.run = wandb.init(
            project=o.project,
            entity=o.entity,
            name=o.name or self.run_dir.name,
            group=o.group,
            tags=o.tags or None,
            dir=o.dir,
            mode=o.mode,
            id=self.tracking_id,
            resume="allow",
            config=self.config.model_dump(mode="json", exclude={"run_dir", "scratch_dir"}),
            reinit="create_new",  # a run of its own, beside any the user's program has open
            settings=wandb.Settings(console="off"),  # the evolution's own output and progress bars stay as they are
        )
        self.run.define_metric("candidate")
        self.run.define_metric("candidate/*", step_metric="candidate")
        self.run.define_metric("generation")
        self.run.define_metric("generation/*", step_metric="generation")

    def on_candidate_scored(self, record: CandidateRecord) -> None:
        metrics = self.candidate_metrics(record)
        if not self.options.log_genes:
            metrics = {k: v for k, v in metrics.items() if not k.startswith("gene/")}
        index = metrics.pop("index")
        self.run.log({"candidate": index, **{f"candidate/{k}": v for k, v in metrics.items()}})

    def on_generation_end(self, generation: int, records: list[CandidateRecord]) -> None:
        metrics = self.generation_metrics(generation, records)
        self.run.log({"generation": metrics.pop("generation"), **{f"generation/{k}": v for k, v in metrics.items()}})

    def on_run_end(self, best: CandidateRecord | None) -> None:
        if best is not None:
            self.run.summary.update({"best/index": best.index, "best/fitness": best.fitness, **self.heldout()})
        artifact = self.wandb.Artifact(_artifact_name(f"{self.run_dir.name}-result"), type="mergekit-evo-result")
        for path in self.result_files():
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def close(self, finished: bool) -> None:
        self.run.finish(exit_code=0 if finished else 1)
