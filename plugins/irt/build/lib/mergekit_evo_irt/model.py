"""The multidimensional two-parameter logistic (2PL) IRT model, fitted by MAP with torch.

P(y_mi = 1) = sigmoid(a_i . theta_m - b_i): item i has a discrimination vector a_i and a difficulty b_i, model m an
ability vector theta_m. Fitting is full-batch L-BFGS on the negative log-posterior (Gaussian priors on a, b and
theta), in float64 on the CPU, from a seeded start, so the same responses and seed give the same fit; thousands of
items by tens of models take seconds. Scores in [0, 1] that are not 0/1 (a metric rather than correctness) are used
as soft targets of the same likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

torch_dtype = torch.float64


class Priors(BaseModel):
    """Standard deviations of the zero-mean Gaussian priors: they keep items every model gets right finite."""

    model_config = ConfigDict(extra="forbid")

    theta: float = Field(1.0, gt=0)
    a: float = Field(1.5, gt=0)
    b: float = Field(3.0, gt=0)


@dataclass(frozen=True)
class ItemParams:
    a: np.ndarray  # (n_items, dim) discriminations
    b: np.ndarray  # (n_items,) difficulties

    @property
    def dim(self) -> int:
        return self.a.shape[1]

    def prob(self, theta: np.ndarray) -> np.ndarray:
        """P(correct) of each item for one ability (dim,) -> (n_items,), or several (m, dim) -> (m, n_items)."""
        return 1.0 / (1.0 + np.exp(-(np.asarray(theta) @ self.a.T - self.b)))

    def take(self, indices) -> ItemParams:
        return ItemParams(self.a[indices], self.b[indices])

    def to_json(self) -> dict:
        return {"a": self.a.tolist(), "b": self.b.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> ItemParams:
        a = np.asarray(data["a"], dtype=float)
        return cls(a.reshape(len(a), -1), np.asarray(data["b"], dtype=float))


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=float), dtype=torch_dtype)


def _minimize(params: list[torch.Tensor], loss_fn, max_iter: int = 500) -> None:
    optimizer = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    optimizer.step(closure)


def _nll(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (losses * mask).sum()


def fit(responses: np.ndarray, dim: int, seed: int = 0, priors: Priors | None = None) -> tuple[ItemParams, np.ndarray]:
    """Item parameters and abilities from a models x items matrix of scores in [0, 1] (NaN where not observed)."""
    priors = priors or Priors()
    y_np = np.asarray(responses, dtype=float)
    mask = _t(np.isfinite(y_np))
    y = _t(np.nan_to_num(y_np, nan=0.0))
    n_models, n_items = y_np.shape
    generator = torch.Generator().manual_seed(seed)
    theta = (0.1 * torch.randn(n_models, dim, generator=generator, dtype=torch_dtype)).requires_grad_()
    a = (0.1 * torch.randn(n_items, dim, generator=generator, dtype=torch_dtype) + 0.5).requires_grad_()
    rate = (y * mask).sum(0) / mask.sum(0).clamp(min=1)
    b = (-torch.logit(rate.clamp(0.05, 0.95))).detach().clone().requires_grad_()  # start from each item's logit

    def loss():
        logits = theta @ a.T - b
        prior = ((theta / priors.theta) ** 2).sum() + ((a / priors.a) ** 2).sum() + ((b / priors.b) ** 2).sum()
        return _nll(logits, y, mask) + 0.5 * prior

    _minimize([theta, a, b], loss)
    return ItemParams(a.detach().numpy().copy(), b.detach().numpy().copy()), theta.detach().numpy().copy()


def fit_abilities(responses: np.ndarray, params: ItemParams, prior_sd: float = 1.0) -> np.ndarray:
    """MAP abilities (m, dim) of models from their scores (m, n) on items with known parameters (NaN: unseen)."""
    y_np = np.atleast_2d(np.asarray(responses, dtype=float))
    mask, y = _t(np.isfinite(y_np)), _t(np.nan_to_num(y_np, nan=0.0))
    a, b = _t(params.a), _t(params.b)
    theta = torch.zeros(len(y_np), params.dim, dtype=torch_dtype, requires_grad=True)
    _minimize([theta], lambda: _nll(theta @ a.T - b, y, mask) + 0.5 * ((theta / prior_sd) ** 2).sum())
    return theta.detach().numpy().copy()


def fit_mixture(
    responses: np.ndarray, params: ItemParams, endpoint_theta: np.ndarray, prior_sd: float = 1.0
) -> np.ndarray:
    """mp-IRT's lambda: the merged model's ability is sum_j lambda_j theta_j over the endpoints' abilities.

    MAP on the merged model's scores (n,) on items with known parameters; the prior centres lambda on the plain
    average of the endpoints, so few anchors pull it only as far as they are sure.
    """
    y = _t(responses)
    a, b, basis = _t(params.a), _t(params.b), _t(endpoint_theta)
    centre = torch.full((len(basis),), 1.0 / len(basis), dtype=torch_dtype)
    lam = centre.clone().requires_grad_()
    ones = torch.ones_like(y)
    _minimize([lam], lambda: _nll((lam @ basis) @ a.T - b, y, ones) + 0.5 * (((lam - centre) / prior_sd) ** 2).sum())
    return lam.detach().numpy().copy()


def heldout_log_loss(
    responses: np.ndarray, dim: int, seed: int, priors: Priors | None = None, share: float = 0.2
) -> float:
    """Mean log loss on a random `share` of the observed entries when the fit never saw them."""
    y = np.asarray(responses, dtype=float)
    rng = np.random.default_rng(seed)
    hidden = np.isfinite(y) & (rng.random(y.shape) < share)
    params, theta = fit(np.where(hidden, np.nan, y), dim, seed, priors)
    p = np.clip(params.prob(theta)[hidden], 1e-9, 1 - 1e-9)
    target = y[hidden]
    return float(-np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)))


def choose_dim(responses: np.ndarray, dims: list[int], seed: int, priors: Priors | None = None) -> int:
    """The dimension with the lowest held-out log loss (ties to the smaller)."""
    losses = [heldout_log_loss(responses, d, seed, priors) for d in dims]
    return dims[int(np.argmin(losses))]
