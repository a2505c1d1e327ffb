"""Each IRT estimator equals its formula, and prepares from the run's response data as a run would."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import qmc

from mergekit_evo import UserError
from mergekit_evo.testing import StaticResponses
from mergekit_evo_irt.estimators import (
    ESTIMATORS,
    GMPIRTEstimator,
    GPIRTEstimator,
    IRTEstimator,
    MPIRTEstimator,
    PIRTEstimator,
    TaskFit,
    calibration_points,
    mix,
    mixing_weight,
    mp_irt,
    p_irt,
    weighted_accuracy,
)
from mergekit_evo_irt.model import ItemParams, fit, fit_abilities, fit_mixture

# Four items; the anchors are items 0 and 2, standing for 3/4 and 1/4 of the task.
PARAMS = ItemParams(np.array([[1.0], [2.0], [0.5], [1.0]]), np.array([0.0, 1.0, -1.0, 0.5]))
ANCHORS = np.array([0, 2])
WEIGHTS = np.array([0.75, 0.25])
Y = np.array([1.0, 0.0])
THETA = np.array([0.5])  # P(item 1) = sigmoid(2 * 0.5 - 1) = 0.5, P(item 3) = sigmoid(0.5 - 0.5) = 0.5


def test_the_formulas_on_a_hand_computed_case():
    assert weighted_accuracy(Y, WEIGHTS) == 0.75
    assert p_irt(Y, ANCHORS, PARAMS, THETA) == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)  # n/N * mean + rest * mean P
    assert mp_irt(Y, WEIGHTS, ANCHORS, PARAMS, THETA) == pytest.approx(0.5 * 0.75 + 0.5 * 0.5)
    assert mix(0.75, 0.625, 0.5) == pytest.approx(0.6875)  # gmp-IRT with the paper's fixed 0.5
    assert mixing_weight(0.01, 0.03) == pytest.approx(0.25)
    assert mixing_weight(0.0, 0.0) == 0.5


def _estimator(cls, lam=0.2, delta=0.4):
    estimator = cls(options={}, seed=0)
    endpoints = np.array([[1.0], [-1.0]])
    estimator.fits = {"t": TaskFit(PARAMS, ANCHORS, WEIGHTS, endpoints, 1, lam, delta, {})}
    return estimator


def test_each_estimator_is_its_formula():
    anchored = PARAMS.take(ANCHORS)
    theta = fit_abilities(Y[None], anchored)[0]
    merged = fit_mixture(Y, anchored, np.array([[1.0], [-1.0]])) @ np.array([[1.0], [-1.0]])
    p, mp = p_irt(Y, ANCHORS, PARAMS, theta), mp_irt(Y, WEIGHTS, ANCHORS, PARAMS, merged)
    assert _estimator(IRTEstimator).estimate("t", ANCHORS, Y) == 0.75
    assert _estimator(PIRTEstimator).estimate("t", ANCHORS, Y) == pytest.approx(p)
    assert _estimator(GPIRTEstimator, lam=0.2).estimate("t", ANCHORS, Y) == pytest.approx(0.2 * 0.75 + 0.8 * p)
    assert _estimator(MPIRTEstimator).estimate("t", ANCHORS, Y) == pytest.approx(mp)
    assert _estimator(GMPIRTEstimator, delta=0.4).estimate("t", ANCHORS, Y) == pytest.approx(0.4 * 0.75 + 0.6 * mp)


def _world(seed=0, n_items=120, n_endpoints=3):
    """Simulated responses: items from a 2PL, endpoints and merges with abilities along a line."""
    rng = np.random.default_rng(seed)
    items = ItemParams(rng.lognormal(0, 0.5, (n_items, 1)), rng.normal(0, 1, n_items))
    ids = {"t": [f"i{k}" for k in range(n_items)]}

    def respond(theta):
        return {
            "t": (
                np.random.default_rng(int(1e6 * abs(theta)) + 1).random(n_items) < items.prob(np.array([theta]))
            ).astype(float)
        }

    endpoints = {f"m{j}": respond(t) for j, t in enumerate(np.linspace(-1.5, 1.5, n_endpoints))}
    return StaticResponses(ids, 2, seed, endpoints, lambda x: respond(3 * float(x.mean()) - 1.5)), respond


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_prepare_fits_chooses_anchors_and_keeps_the_fit(name):
    source, respond = _world()
    estimator = ESTIMATORS[name](options={"n": 15, "calibration": 12}, seed=0)
    estimator.prepare(source)
    anchors = estimator.select("t", 120)
    assert 1 <= len(anchors) <= 15 and list(anchors) == sorted(anchors)
    assert len(source._merges) == 12  # the calibration merges were scored on every item
    assert "IRT for t" in source.messages[0]
    truth = respond(0.3)["t"]
    assert abs(estimator.estimate("t", anchors, truth[anchors]) - truth.mean()) < 0.2
    again = ESTIMATORS[name](options={"n": 15, "calibration": 12}, seed=0)
    again.prepare(source)  # restored from what the first one saved, not refitted
    assert len(source.messages) == 1
    np.testing.assert_array_equal(again.select("t", 120), anchors)


def test_a_changed_option_refits():
    source, _ = _world()
    IRTEstimator(options={"n": 10, "calibration": 4}, seed=0).prepare(source)
    IRTEstimator(options={"n": 12, "calibration": 4}, seed=0).prepare(source)
    assert len(source.messages) == 2


def test_mixing_from_data_or_fixed():
    source, _ = _world()
    fixed = GMPIRTEstimator(options={"n": 10, "calibration": 8, "mixing": 0.5}, seed=0)
    fixed.prepare(source)
    assert fixed.fits["t"].delta == 0.5
    learned = GMPIRTEstimator(options={"n": 10, "calibration": 8}, seed=0)
    learned.prepare(StaticResponses(source.item_ids, 2, 0, source.inputs(), source._score_point))
    assert 0.0 <= learned.fits["t"].delta <= 1.0 and learned.fits["t"].delta != 0.5


def test_item_parameters_can_come_from_a_file(tmp_path):
    source, _ = _world()
    rng = np.random.default_rng(9)
    a, b = rng.lognormal(0, 0.5, (120, 1)), rng.normal(0, 1, 120)
    order = rng.permutation(120)  # the file may list items in any order
    path = tmp_path / "items.json"
    path.write_text(
        json.dumps({"t": {"item_ids": [f"i{k}" for k in order], "a": a[order].tolist(), "b": b[order].tolist()}})
    )
    estimator = IRTEstimator(options={"n": 10, "calibration": 0, "item_params": str(path)}, seed=0)
    estimator.prepare(source)
    np.testing.assert_allclose(estimator.fits["t"].params.b, b)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"n": 0}, ["estimator.options.n"]),
        ({"anchor": "random"}, ["estimator.options.anchor: unknown option", "anchors"]),
        ({"anchors": "kmeans"}, ["estimator.options.anchors"]),
        ({"mixing": 2}, ["estimator.options.mixing", "between 0 and 1"]),
        ({"item_params": "/no/such.json"}, ["estimator.options.item_params", "does not exist"]),
    ],
)
def test_bad_options_are_refused_naming_the_option(options, words):
    with pytest.raises(UserError) as e:
        IRTEstimator(options=options, seed=0)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_the_simulated_fit_beats_plain_anchors_on_unseen_items():
    """On 2PL data the model-based estimates use the unseen items' predictions and err less than the anchors."""
    source, respond = _world(seed=1, n_items=300)
    gmp = GMPIRTEstimator(options={"n": 10, "calibration": 16}, seed=0)
    gmp.prepare(source)
    anchors = gmp.select("t", 300)
    plain, model = [], []
    for theta in np.linspace(-1.2, 1.2, 25):
        y = respond(theta)["t"]
        plain.append(abs(weighted_accuracy(y[anchors], gmp.fits["t"].weights) - y.mean()))
        model.append(abs(gmp.estimate("t", anchors, y[anchors]) - y.mean()))
    assert np.mean(model) < np.mean(plain)
    params, _ = fit(np.array([respond(t)["t"] for t in np.linspace(-1, 1, 5)]), 1, 0)
    assert params.a.shape == (300, 1)


def test_more_anchors_than_search_items_are_refused_before_the_run_starts():
    estimator = GMPIRTEstimator(options={"n": 500}, seed=0)
    estimator.check("math_a", 500)  # as many as there are: fine
    with pytest.raises(UserError, match=r"estimator.options.n: 500 anchors are more than the 128 search items"):
        estimator.check("math_a", 128)


def test_calibration_merges_can_be_drawn_around_the_start_point():
    start = np.array([0.2, 0.6])
    points = calibration_points(2, 400, 0, around=start)
    assert points.shape == (400, 2) and points.min() >= 0 and points.max() <= 1
    np.testing.assert_allclose(points.mean(0), start, atol=0.03)
    np.testing.assert_allclose(points.std(0), 1 / 6, atol=0.03)
    np.testing.assert_array_equal(points, calibration_points(2, 400, 0, around=start))
    # the genome-wide default is the Latin hypercube runs have always drawn
    expected = qmc.LatinHypercube(d=2, seed=np.random.default_rng([0, 7])).random(8)
    np.testing.assert_array_equal(calibration_points(2, 8, 0), expected)


def test_a_fit_saved_before_calibration_around_existed_is_reused_and_start_refits():
    source, _ = _world()
    IRTEstimator(options={"n": 10, "calibration": 4}, seed=0).prepare(source)
    assert "calibration_around" not in source.load("irt")["options"]  # as runs of the previous version saved it
    IRTEstimator(options={"n": 10, "calibration": 4, "calibration_around": "genome"}, seed=0).prepare(source)
    assert len(source.messages) == 1
    IRTEstimator(options={"n": 10, "calibration": 4, "calibration_around": "start"}, seed=0).prepare(source)
    assert len(source.messages) == 2 and len(source._merges) == 8
