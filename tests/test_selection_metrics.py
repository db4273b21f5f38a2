"""Kennard–Stone, random draws, figures of merit and split-conformal intervals."""

import numpy as np
import pytest

from caltransfer_jax.benchmark.metrics import (
    conformal_quantile,
    interval_coverage,
    regression_metrics,
)
from caltransfer_jax.methods.classical.selection import kennard_stone, random_draw


def test_kennard_stone_starts_from_the_extremes_and_spreads():
    X = np.array([[0.0], [10.0], [5.0], [1.0], [9.0], [4.9]])
    chosen = kennard_stone(X, 3)
    assert list(chosen) == [0, 1, 2]
    assert len(set(kennard_stone(np.random.default_rng(0).normal(size=(30, 4)), 30))) == 30


def test_kennard_stone_maximin_beats_random():
    X = np.random.default_rng(0).normal(size=(200, 3))

    def min_gap(idx):
        d = np.linalg.norm(X[idx, None] - X[None, idx], axis=-1)
        return d[np.triu_indices(len(idx), 1)].min()

    rng = np.random.default_rng(1)
    assert min_gap(kennard_stone(X, 10)) > max(
        min_gap(random_draw(200, 10, rng)) for _ in range(20)
    )


def test_selection_rejects_impossible_sizes():
    with pytest.raises(ValueError):
        kennard_stone(np.zeros((3, 2)), 4)
    with pytest.raises(ValueError):
        random_draw(3, 0, np.random.default_rng(0))


def test_regression_metrics_on_known_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = y + np.array([0.1, -0.1, 0.1, -0.1]) + 0.5
    m = regression_metrics(y, pred)
    assert m["bias"] == pytest.approx(0.5)
    assert m["rmsep"] == pytest.approx(np.sqrt(0.26))
    assert m["sep"] == pytest.approx(np.sqrt(0.04 / 3))
    assert m["rpd"] == pytest.approx(np.std(y, ddof=1) / np.sqrt(0.04 / 3))
    assert m["r2"] == pytest.approx(1 - 4 * 0.26 / 5.0)
    assert m["slope"] == pytest.approx(np.polyfit(y, pred, 1)[0])
    assert regression_metrics(y, y)["r2"] == 1.0
    with pytest.raises(ValueError, match="non-finite"):
        regression_metrics(y, [1.0, np.nan, 2.0, 3.0])


def test_conformal_quantile_and_coverage():
    scores = np.arange(1, 20, dtype=float)  # 19 scores: rank ⌈20 · 0.9⌉ = 18
    assert conformal_quantile(scores, 0.1) == 18.0
    assert conformal_quantile(scores[:5], 0.1) == np.inf
    rng = np.random.default_rng(0)
    calibration, test = rng.normal(size=999), rng.normal(size=20000)
    q = conformal_quantile(calibration, 0.1)
    assert interval_coverage(test, np.zeros_like(test), q) == pytest.approx(0.9, abs=0.02)


def test_cv_plus_covers_a_shifted_target_at_the_nominal_level():
    # A linear calibration transferred by least squares on k pairs of a shifted target: CV+
    # intervals from 5 folds of the transfer samples cover new target samples at ~90 %.
    from caltransfer_jax.benchmark.metrics import cv_plus_interval

    rng = np.random.default_rng(0)
    covered = []
    for _ in range(300):
        beta = rng.normal(size=3)
        x_t, x_test = rng.normal(size=(20, 3)), rng.normal(size=(50, 3))
        y_t = x_t @ beta + 1.5 + 0.3 * rng.normal(size=20)  # the target: offset + noise
        y_test = x_test @ beta + 1.5 + 0.3 * rng.normal(size=50)
        folds = rng.permutation(20) % 5
        predictions, residuals = np.empty((20, 50)), np.empty(20)
        for f in range(5):
            held = folds == f
            design = np.c_[x_t[~held], np.ones((~held).sum())]
            coef = np.linalg.lstsq(design, y_t[~held], rcond=None)[0]
            predictions[held] = np.c_[x_test, np.ones(50)] @ coef
            residuals[held] = np.abs(y_t[held] - np.c_[x_t[held], np.ones(held.sum())] @ coef)
        lower, upper = cv_plus_interval(predictions, residuals, 0.1)
        covered.append(np.mean((lower <= y_test) & (y_test <= upper)))
    assert 0.87 <= np.mean(covered) <= 0.95
    lower, upper = cv_plus_interval(np.zeros((5, 3)), np.ones(5), 0.1)  # too few for 90 %
    assert np.isinf(lower).all() and np.isinf(upper).all()
