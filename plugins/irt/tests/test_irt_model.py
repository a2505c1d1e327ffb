"""The 2PL fit and the anchor choice, on data simulated from known parameters."""

from __future__ import annotations

import numpy as np
import pytest

from mergekit_evo_irt.anchors import (
    irt_kmeans_anchors,
    random_anchors,
    select_anchors,
    stratified_anchors,
)
from mergekit_evo_irt.model import (
    ItemParams,
    choose_dim,
    fit,
    fit_abilities,
    fit_mixture,
)


def simulate(n_models: int, n_items: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    true = ItemParams(rng.lognormal(0.0, 0.5, (n_items, dim)), rng.normal(0.0, 1.0, n_items))
    theta = rng.normal(0.0, 1.0, (n_models, dim))
    y = (rng.random((n_models, n_items)) < true.prob(theta)).astype(float)
    return true, theta, y


def corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_the_fit_recovers_known_item_parameters_and_abilities():
    true, theta, y = simulate(300, 200, 1, seed=0)
    params, fitted = fit(y, 1, seed=0)
    sign = np.sign(corr(params.a, true.a))  # a 1-D ability is identified up to its sign
    assert corr(params.b, true.b) > 0.9
    assert sign * corr(params.a, true.a) > 0.9
    assert sign * corr(fitted, theta) > 0.9


def test_a_multidimensional_fit_recovers_the_response_probabilities():
    true, theta, y = simulate(300, 200, 2, seed=1)
    params, fitted = fit(y, 2, seed=0)
    assert corr(params.prob(fitted), true.prob(theta)) > 0.9  # invariant to rotations of the ability space


def test_the_fit_is_deterministic_under_its_seed():
    _, _, y = simulate(40, 60, 2, seed=2)
    first, second = fit(y, 2, seed=5), fit(y, 2, seed=5)
    np.testing.assert_array_equal(first[0].a, second[0].a)
    np.testing.assert_array_equal(first[1], second[1])


def test_unobserved_entries_are_left_out_of_the_fit():
    true, theta, y = simulate(200, 100, 1, seed=3)
    holes = np.random.default_rng(0).random(y.shape) < 0.3
    params, fitted = fit(np.where(holes, np.nan, y), 1, seed=0)
    assert corr(params.prob(fitted)[holes], true.prob(theta)[holes]) > 0.85  # predicted, never seen


def test_abilities_are_recovered_for_known_items():
    true, theta, y = simulate(50, 400, 1, seed=4)
    assert corr(fit_abilities(y, true), theta) > 0.9


def test_mp_irt_recovers_the_mixing_weights_of_a_merged_ability():
    rng = np.random.default_rng(5)
    items = ItemParams(rng.lognormal(0.0, 0.5, (3000, 2)), rng.normal(0.0, 1.0, 3000))
    endpoints = np.array([[2.0, -1.0], [-1.0, 2.0], [0.0, 0.0]])
    lam = np.array([0.7, 0.3, 0.0])
    y = (rng.random(3000) < items.prob(lam @ endpoints)).astype(float)
    fitted = fit_mixture(y, items, endpoints)
    merged = fitted @ endpoints
    np.testing.assert_allclose(merged, lam @ endpoints, atol=0.15)


def test_the_dimension_is_chosen_by_held_out_fit():
    _, _, flat = simulate(300, 200, 1, seed=6)
    assert choose_dim(flat, [1, 3], seed=0) == 1
    _, _, rich = simulate(300, 200, 3, seed=7)
    assert choose_dim(rich, [1, 3], seed=0) == 3


# ------------------------------------------------------------------------------------------ anchors


def test_irt_kmeans_takes_one_anchor_per_cluster_weighted_by_its_share():
    # three tight clusters of items in (a, b), of 10, 30 and 60 items
    rng = np.random.default_rng(0)
    centres = [(0.5, -2.0), (1.0, 0.0), (2.0, 2.0)]
    sizes = [10, 30, 60]
    a = np.concatenate([np.full(s, c[0]) + 0.01 * rng.standard_normal(s) for c, s in zip(centres, sizes)])
    b = np.concatenate([np.full(s, c[1]) + 0.01 * rng.standard_normal(s) for c, s in zip(centres, sizes)])
    anchors, weights = irt_kmeans_anchors(ItemParams(a[:, None], b), 3, seed=0)
    assert sorted(np.searchsorted(np.cumsum(sizes), anchors, side="right")) == [0, 1, 2]  # one in each cluster
    assert sorted(weights) == pytest.approx([0.1, 0.3, 0.6])
    assert list(anchors) == sorted(anchors)


def test_stratified_anchors_cover_every_difficulty():
    responses = np.tile(np.linspace(0, 1, 100), (5, 1))  # item i is solved at rate i/99
    anchors, weights = stratified_anchors(responses, 4, seed=0)
    assert [a // 25 for a in anchors] == [0, 1, 2, 3]
    assert weights == pytest.approx([0.25] * 4)


def test_random_anchors_are_seeded_and_uniform():
    first, weights = random_anchors(100, 10, seed=3)
    again, _ = random_anchors(100, 10, seed=3)
    np.testing.assert_array_equal(first, again)
    assert len(set(first)) == 10 and weights == pytest.approx([0.1] * 10)


def test_asking_for_as_many_anchors_as_items_takes_them_all():
    params = ItemParams(np.ones((5, 1)), np.zeros(5))
    anchors, weights = select_anchors("irt-kmeans", 8, params, np.ones((2, 5)), seed=0)
    assert list(anchors) == [0, 1, 2, 3, 4] and weights == pytest.approx([0.2] * 5)
