"""MERGE3's IRT fitness estimators, fitted on the run's own tasks.

`prepare` scores the input models and a calibration population of merges (a Latin hypercube sample of the genome)
on every search item, fits a multidimensional 2PL model per task (or reads item parameters from a file), picks the
anchors, and chooses the gp-/gmp-IRT mixing weights from the calibration data. Everything it fits is saved with the
run, so a resumed run reuses it instead of refitting.

The estimates, for a merged model scored y on the n anchors (weights w) of a task of N items:
- `irt`: sum_i w_i y_i, the weighted anchor accuracy.
- `p-irt`: (n/N) mean(y) + (1 - n/N) mean over unseen items of P_i(theta), theta fitted on the anchors.
- `gp-irt`: lam * irt + (1 - lam) * p-irt, lam = b^2 / (b^2 + v) from data (b: p-irt's error on the calibration
  merges, v: the variance of the weighted anchor accuracy there).
- `mp-irt`: (n/N) irt + (1 - n/N) mean over unseen items of P_i(sum_j lambda_j theta_j), theta_j the endpoints'
  abilities and lambda fitted on the anchors.
- `gmp-irt`: delta * irt + (1 - delta) * mp-irt, delta chosen from data like lam (or a number, 0.5 in the paper).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.stats import qmc

from mergekit_evo import Estimator, ResponseSource, Scores, UserError
from mergekit_evo_irt.anchors import Method, nearest_anchor_weights, select_anchors
from mergekit_evo_irt.model import (
    ItemParams,
    Priors,
    choose_dim,
    fit,
    fit_abilities,
    fit_mixture,
)

# ------------------------------------------------------------------------------------------ the formulas


def weighted_accuracy(y: np.ndarray, weights: np.ndarray) -> float:
    return float(np.dot(weights, y))


def _unseen_mean(params: ItemParams, anchors: np.ndarray, theta: np.ndarray) -> tuple[float, float]:
    """The share n/N of the anchors, and the mean predicted accuracy over the other items."""
    n_items = len(params.b)
    unseen = np.setdiff1d(np.arange(n_items), anchors)
    share = len(anchors) / n_items
    return share, float(params.prob(theta)[unseen].mean()) if len(unseen) else 0.0


def p_irt(y: np.ndarray, anchors: np.ndarray, params: ItemParams, theta: np.ndarray) -> float:
    share, unseen = _unseen_mean(params, anchors, theta)
    return share * float(np.mean(y)) + (1 - share) * unseen


def mp_irt(y: np.ndarray, weights: np.ndarray, anchors: np.ndarray, params: ItemParams, theta: np.ndarray) -> float:
    share, unseen = _unseen_mean(params, anchors, theta)
    return share * weighted_accuracy(y, weights) + (1 - share) * unseen


def mix(anchor_estimate: float, model_estimate: float, weight: float) -> float:
    return weight * anchor_estimate + (1 - weight) * model_estimate


def mixing_weight(bias_sq: float, variance: float) -> float:
    """tinyBenchmarks' choice: trust the anchors as much as the IRT estimate is biased relative to their noise."""
    return float(bias_sq / (bias_sq + variance)) if bias_sq + variance > 0 else 0.5


# ------------------------------------------------------------------------------------------ fitted state


@dataclass
class TaskFit:
    params: ItemParams
    anchors: np.ndarray
    weights: np.ndarray
    endpoint_theta: np.ndarray  # (n_endpoints, dim)
    dim: int
    lam: float  # gp-irt's mixing weight
    delta: float  # gmp-irt's mixing weight
    errors: dict[str, float]  # each estimator's mean absolute error on the calibration merges

    def to_json(self) -> dict:
        return {
            "params": self.params.to_json(),
            "anchors": self.anchors.tolist(),
            "weights": self.weights.tolist(),
            "endpoint_theta": self.endpoint_theta.tolist(),
            "dim": self.dim,
            "lam": self.lam,
            "delta": self.delta,
            "errors": self.errors,
        }

    @classmethod
    def from_json(cls, d: dict) -> TaskFit:
        return cls(
            ItemParams.from_json(d["params"]),
            np.asarray(d["anchors"], dtype=int),
            np.asarray(d["weights"]),
            np.asarray(d["endpoint_theta"], dtype=float).reshape(-1, d["dim"]),
            d["dim"],
            d["lam"],
            d["delta"],
            d["errors"],
        )


class IRTOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(20, ge=1, description="anchor items per task")
    anchors: Method = Field("irt-kmeans", description="how anchors are chosen: irt-kmeans, stratified or random")
    dim: int | Literal["auto"] = Field("auto", description="IRT dimension, or auto: the best held-out fit of `dims`")
    dims: list[int] = Field([1, 2, 3, 5], min_length=1)
    calibration: int = Field(16, ge=0, description="merges sampled over the genome and scored on every item")
    calibration_around: Literal["genome", "start"] = Field(
        "genome",
        description="where the calibration merges are drawn: genome (a Latin hypercube of all of it) or start "
        "(normal around the search's start point, sd 1/6 of each range, as CMA-ES's first steps)",
    )
    item_params: Path | None = Field(None, description="JSON {task: {item_ids, a, b}} to use instead of fitting")
    mixing: Literal["data"] | float = Field("data", description="gp/gmp-IRT mixing weight: data, or a number in [0, 1]")
    priors: Priors = Field(default_factory=Priors)

    @field_validator("mixing")
    @classmethod
    def _unit(cls, v):
        if not isinstance(v, str) and not 0 <= v <= 1:
            raise ValueError("must be 'data' or a number between 0 and 1")
        return v

    @field_validator("item_params")
    @classmethod
    def _exists(cls, v):
        if v is not None and not Path(v).is_file():
            raise ValueError(f"{v} does not exist; give a JSON file of {{task: {{item_ids, a, b}}}}")
        return v

    @field_validator("dim")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("must be 1 or more, or 'auto'")
        return v


def _read_item_params(path: Path, task: str, item_ids: list[str]) -> ItemParams:
    data = json.loads(path.read_text())
    if task not in data:
        raise UserError(f"estimator.options.item_params: {path} has no parameters for task {task!r}")
    entry = data[task]
    position = {item: i for i, item in enumerate(entry["item_ids"])}
    missing = [i for i in item_ids if i not in position]
    if missing:
        raise UserError(f"estimator.options.item_params: {path} lacks item {missing[0]!r} of task {task!r}")
    order = [position[i] for i in item_ids]
    full = ItemParams.from_json(entry)
    return full.take(order)


def calibration_points(dim: int, n: int, seed: int, around: np.ndarray | None = None) -> np.ndarray:
    """The calibration merges' genome points, the same for the same seed: a space-filling Latin hypercube of the
    whole genome, or (`around` a start point) normal draws around it with sd 1/6, clipped to the genome."""
    if n == 0:
        return np.zeros((0, dim))
    rng = np.random.default_rng([seed, 7])
    if around is not None:
        return np.clip(np.asarray(around, dtype=float) + rng.normal(0.0, 1 / 6, (n, dim)), 0.0, 1.0)
    return qmc.LatinHypercube(d=dim, seed=rng).random(n)


class IRTEstimator(Estimator):
    """Weighted accuracy on IRT-chosen anchor items (tinyBenchmarks' IRT estimator)."""

    Options = IRTOptions

    def check(self, task: str, n_items: int) -> None:
        if self.options.n > n_items:
            raise UserError(
                f"estimator.options.n: {self.options.n} anchors are more than the {n_items} search items "
                f"of task {task}; use at most {n_items}, or the `full` estimator"
            )

    def prepare(self, source: ResponseSource) -> None:
        # the responses are kept for `refit`; on resume they come from the run's cache, not from scoring again
        endpoints = source.inputs()
        around = source.start if self.options.calibration_around == "start" else None
        points = calibration_points(source.dim, self.options.calibration, self.seed, around)
        merges = [m for m in source.merges(points) if m is not None]
        self.item_ids = source.item_ids
        self.responses = {
            task: (
                np.array([scores[task] for scores in endpoints.values()]),
                np.array([m[task] for m in merges]).reshape(len(merges), len(item_ids)),
            )
            for task, item_ids in source.item_ids.items()
        }
        saved = source.load("irt")
        if saved is not None and saved.get("options") == self._fitted_with():
            self.fits = {task: TaskFit.from_json(d) for task, d in saved["tasks"].items()}
            return
        self.fits = {}
        for task, item_ids in source.item_ids.items():
            endpoint_y, calibration_y = self.responses[task]
            self.fits[task] = self._fit_task(task, item_ids, endpoint_y, calibration_y)
            source.log(
                f"IRT for {task}: dimension {self.fits[task].dim}, {len(self.fits[task].anchors)} anchors "
                f"of {len(item_ids)} items; calibration error (mean absolute, points): "
                + ", ".join(f"{k} {100 * v:.1f}" for k, v in self.fits[task].errors.items())
            )
        source.save(
            "irt",
            {"options": self._fitted_with(), "tasks": {t: f.to_json() for t, f in self.fits.items()}},
        )

    def _fitted_with(self) -> dict:
        """The options a saved fit is checked against; an option added since a run started is left out while it
        holds its default, so that run resumes with its fit."""
        options = self.options.model_dump(mode="json")
        if options["calibration_around"] == "genome":
            del options["calibration_around"]
        return options

    def _fit_task(
        self,
        task: str,
        item_ids: list[str],
        endpoint_y: np.ndarray,
        calibration_y: np.ndarray,
        keep: TaskFit | None = None,
    ) -> TaskFit:
        """Fit a task's IRT model, anchors and mixing weights; a refit `keep`s the earlier fit's dimension and
        anchors (the items every candidate is scored on) and learns the rest again."""
        o = self.options
        responses = np.vstack([endpoint_y, calibration_y])
        if o.item_params is not None:
            params = _read_item_params(o.item_params, task, item_ids)
            dim = params.dim
            endpoint_theta = fit_abilities(endpoint_y, params, o.priors.theta)
        else:
            if keep is not None:
                dim = keep.dim
            else:
                dim = o.dim if o.dim != "auto" else choose_dim(responses, o.dims, self.seed, o.priors)
            params, theta = fit(responses, dim, self.seed, o.priors)
            endpoint_theta = theta[: len(endpoint_y)]
        if keep is None:
            anchors, weights = select_anchors(o.anchors, o.n, params, responses, self.seed)
        elif o.anchors == "irt-kmeans":
            anchors, weights = keep.anchors, nearest_anchor_weights(params, keep.anchors)
        else:
            anchors, weights = keep.anchors, keep.weights
        fit_ = TaskFit(params, anchors, weights, endpoint_theta, dim, 0.5, 0.5, {})
        # Mixing weights and errors from the calibration merges (the endpoints when there are none).
        judged = calibration_y if len(calibration_y) >= 2 else responses
        truth = judged.mean(axis=1)
        anchor_est = judged[:, anchors] @ weights
        thetas = fit_abilities(judged[:, anchors], params.take(anchors), o.priors.theta)  # as p-IRT fits them
        p_est = np.array([p_irt(y[anchors], anchors, params, theta) for y, theta in zip(judged, thetas)])
        mp_est = np.array([_mp_irt_of(y[anchors], fit_) for y in judged])
        p_anchor = params.take(anchors).prob(thetas)
        variance = float(np.mean((p_anchor * (1 - p_anchor)) @ (weights**2)))
        fit_.lam = mixing_weight(float(np.mean((p_est - truth) ** 2)), variance) if o.mixing == "data" else o.mixing
        fit_.delta = mixing_weight(float(np.mean((mp_est - truth) ** 2)), variance) if o.mixing == "data" else o.mixing
        estimates = {
            "irt": anchor_est,
            "p-irt": p_est,
            "gp-irt": fit_.lam * anchor_est + (1 - fit_.lam) * p_est,
            "mp-irt": mp_est,
            "gmp-irt": fit_.delta * anchor_est + (1 - fit_.delta) * mp_est,
        }
        fit_.errors = {k: float(np.mean(np.abs(v - truth))) for k, v in estimates.items()}
        return fit_

    def select(self, task: str, n_items: int) -> np.ndarray:
        return self.fits[task].anchors

    def estimate(self, task: str, indices: Sequence[int], scores: np.ndarray) -> float:
        return weighted_accuracy(np.asarray(scores, dtype=float), self.fits[task].weights)

    def refit(self, audited: list[Scores]) -> bool:
        """Fit again with the audited candidates added to the calibration merges: same dimension and anchors, new
        item parameters, endpoint abilities, mixing weights and (irt-kmeans) anchor weights."""
        if not audited:
            return False
        for task, item_ids in self.item_ids.items():
            endpoint_y, calibration_y = self.responses[task]
            extra = np.array([scores[task] for scores in audited], dtype=float)
            self.fits[task] = self._fit_task(
                task, item_ids, endpoint_y, np.vstack([calibration_y, extra]), keep=self.fits[task]
            )
        return True

    def get_state(self) -> dict:
        return {task: f.to_json() for task, f in self.fits.items()}

    def set_state(self, state: dict) -> None:
        self.fits = {task: TaskFit.from_json(d) for task, d in state.items()}


def _p_irt_of(y: np.ndarray, f: TaskFit, theta_sd: float) -> float:
    theta = fit_abilities(y[None], f.params.take(f.anchors), theta_sd)[0]
    return p_irt(y, f.anchors, f.params, theta)


def _mp_irt_of(y: np.ndarray, f: TaskFit) -> float:
    lam = fit_mixture(y, f.params.take(f.anchors), f.endpoint_theta)
    return mp_irt(y, f.weights, f.anchors, f.params, lam @ f.endpoint_theta)


class PIRTEstimator(IRTEstimator):
    """p-IRT: anchor accuracy plus the IRT prediction on unseen items, for an ability fitted on the anchors."""

    def estimate(self, task, indices, scores):
        return _p_irt_of(np.asarray(scores, dtype=float), self.fits[task], self.options.priors.theta)


class GPIRTEstimator(IRTEstimator):
    """gp-IRT: weighted anchors and p-IRT, mixed by a weight chosen from the calibration data."""

    def estimate(self, task, indices, scores):
        y, f = np.asarray(scores, dtype=float), self.fits[task]
        return mix(weighted_accuracy(y, f.weights), _p_irt_of(y, f, self.options.priors.theta), f.lam)


class MPIRTEstimator(IRTEstimator):
    """mp-IRT (MERGE3): the merge's ability as a mix of the endpoints' abilities, fitted on the anchors."""

    def estimate(self, task, indices, scores):
        return _mp_irt_of(np.asarray(scores, dtype=float), self.fits[task])


class GMPIRTEstimator(IRTEstimator):
    """gmp-IRT (MERGE3): weighted anchors and mp-IRT, mixed by a weight from data (or `mixing: 0.5`)."""

    def estimate(self, task, indices, scores):
        y, f = np.asarray(scores, dtype=float), self.fits[task]
        return mix(weighted_accuracy(y, f.weights), _mp_irt_of(y, f), f.delta)


ESTIMATORS = {
    "irt": IRTEstimator,
    "p-irt": PIRTEstimator,
    "gp-irt": GPIRTEstimator,
    "mp-irt": MPIRTEstimator,
    "gmp-irt": GMPIRTEstimator,
}
