"""Anchor items: the n items a candidate is actually scored on, each with the share of the task it stands for.

- `random`: n items drawn uniformly; each stands for 1/n of the task.
- `stratified`: items sorted by how often the response models got them right, cut into n equal strata, one item
  drawn per stratum; each stands for its stratum's share.
- `irt-kmeans` (tinyBenchmarks): k-means with k = n on the item embeddings (a_i, b_i); the item nearest each
  centroid is an anchor and stands for its cluster's share.

All are seeded; anchors come back in item order with their weights (summing to 1).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mergekit_evo_irt.model import ItemParams

Method = Literal["random", "stratified", "irt-kmeans"]


def _ordered(indices: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(indices)
    weights = np.asarray(weights, dtype=float)[order]
    return np.asarray(indices)[order].astype(int), weights / weights.sum()


def random_anchors(n_items: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    chosen = np.random.default_rng(seed).choice(n_items, size=n, replace=False)
    return _ordered(chosen, np.ones(n))


def stratified_anchors(responses: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rate = np.nanmean(np.asarray(responses, dtype=float), axis=0)
    order = np.argsort(rate + 1e-9 * rng.random(len(rate)), kind="stable")  # random among equally hard items
    strata = np.array_split(order, n)
    chosen = [rng.choice(stratum) for stratum in strata]
    return _ordered(np.array(chosen), np.array([len(s) for s in strata]))


def kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 100) -> np.ndarray:
    """Cluster labels of Lloyd's k-means from a k-means++ start: small, seeded and deterministic."""
    rng = np.random.default_rng(seed)
    seeds = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = ((points[:, None, :] - np.array(seeds)[None]) ** 2).sum(-1).min(1)
        total = d2.sum()
        seeds.append(points[rng.choice(len(points), p=d2 / total)] if total > 0 else points[rng.integers(len(points))])
    centres = np.array(seeds)
    labels = np.zeros(len(points), dtype=int)
    for _ in range(iterations):
        labels_new = ((points[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            members = points[labels_new == j]
            if len(members):
                centres[j] = members.mean(0)
        if np.array_equal(labels_new, labels):
            break
        labels = labels_new
    return labels


def _embedding(params: ItemParams) -> np.ndarray:
    """Items as standardized (a_i, b_i) points: what irt-kmeans clusters."""
    embedding = np.hstack([params.a, params.b[:, None]])
    return (embedding - embedding.mean(0)) / (embedding.std(0) + 1e-12)


def nearest_anchor_weights(params: ItemParams, anchors: np.ndarray) -> np.ndarray:
    """Fixed anchors' weights under new item parameters: each item counts for the anchor nearest it (a refit)."""
    embedding = _embedding(params)
    nearest = ((embedding[:, None, :] - embedding[anchors][None]) ** 2).sum(-1).argmin(1)
    counts = np.bincount(nearest, minlength=len(anchors)).astype(float)
    return counts / counts.sum()


def irt_kmeans_anchors(params: ItemParams, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    embedding = _embedding(params)
    labels = kmeans(embedding, n, seed)
    chosen, weights = [], []
    for j in np.unique(labels):
        members = np.where(labels == j)[0]
        centre = embedding[members].mean(0)
        chosen.append(members[((embedding[members] - centre) ** 2).sum(1).argmin()])
        weights.append(len(members))
    return _ordered(np.array(chosen), np.array(weights))


def select_anchors(
    method: Method, n: int, params: ItemParams, responses: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Anchor indices (in item order) and their weights, n of them (all items when the task has n or fewer)."""
    n_items = len(params.b)
    if n >= n_items:
        return np.arange(n_items), np.full(n_items, 1.0 / n_items)
    if method == "random":
        return random_anchors(n_items, n, seed)
    if method == "stratified":
        return stratified_anchors(responses, n, seed)
    return irt_kmeans_anchors(params, n, seed)
