"""DS and PDS: identity between identical instruments, a recovered wavelength shift, exact LOO."""

import numpy as np
import pytest

from caltransfer_jax.methods.classical.pls import PLSRegressionCV
from caltransfer_jax.methods.classical.standardisation import (
    DirectStandardisation,
    PiecewiseDirectStandardisation,
    _ridge_loo,
    _ridge_map,
)

GRID = np.arange(200, dtype=float)


def _spectra(n, seed, shift=0.0):
    """Smooth bands at fixed centres with random amplitudes: a low-rank, realistic family."""
    rng = np.random.default_rng(seed)
    centres = np.array([30.0, 70.0, 110.0, 150.0])
    amps = rng.uniform(0.2, 1.0, size=(n, centres.size))
    bands = np.exp(-0.5 * ((GRID[None, :] - shift - centres[:, None]) / 9.0) ** 2)
    return amps @ bands + 0.1, amps[:, 0] - amps[:, 2]


def _master(X, y):
    return PLSRegressionCV(max_components=6).fit(X, y)


def test_ds_and_pds_are_identity_on_identical_instruments():
    X, y = _spectra(40, 0)
    X_transfer, _ = _spectra(12, 1)
    X_new, _ = _spectra(10, 2)
    master = _master(X, y)
    for cls in (DirectStandardisation, PiecewiseDirectStandardisation):
        method = cls(master).fit(X, y, X_master_transfer=X_transfer, X_target_transfer=X_transfer)
        np.testing.assert_allclose(method.transform(X_new), X_new, atol=1e-4)
        np.testing.assert_allclose(method.predict(X_new), master.predict(X_new), atol=1e-3)


def _random_bands(n, seed, shift=0.0):
    """Spectra of 8 bands at random centres and widths: smooth but of high rank."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 200, size=(n, 8, 1))
    widths = rng.uniform(5, 12, size=(n, 8, 1))
    amps = rng.uniform(0.1, 1.0, size=(n, 8, 1))
    return np.sum(amps * np.exp(-0.5 * ((GRID - shift - centres) / widths) ** 2), axis=1)


def test_pds_recovers_a_wavelength_shift():
    shift = 1.5
    X, y = _spectra(40, 0)
    transfer_master = _random_bands(40, 1)
    transfer_target = _random_bands(40, 1, shift=shift)
    # New spectra, unlike any transfer sample: only a true shift correction carries over.
    test_master = _random_bands(15, 2)
    test_target = _random_bands(15, 2, shift=shift)
    pds = PiecewiseDirectStandardisation(_master(X, y)).fit(
        X, y, X_master_transfer=transfer_master, X_target_transfer=transfer_target
    )
    inner = slice(20, 180)  # away from the padded ends
    before = np.abs(test_target - test_master)[:, inner].max()
    after = np.abs(pds.transform(test_target) - test_master)[:, inner].max()
    assert after < 0.05 * before
    # The local filters read the target about `shift` points later than the master point.
    offsets = np.arange(-pds.half_window_, pds.half_window_ + 1)
    centroid = (pds.coefs_[inner] @ offsets) / pds.coefs_[inner].sum(axis=1)
    np.testing.assert_allclose(np.median(centroid), shift, atol=0.15)


def test_ridge_loo_equals_refitting_without_each_sample():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 4))
    Y = rng.normal(size=(9, 1))
    alpha = 0.05
    residuals, scale = _ridge_loo(X, Y[:, 0], [alpha])
    lam = alpha * scale[0]
    for i in range(9):
        keep = np.arange(9) != i
        Xk, Yk = X[keep], Y[keep]
        mx, my = Xk.mean(axis=0), Yk.mean(axis=0)
        F = np.linalg.solve((Xk - mx).T @ (Xk - mx) + lam * np.eye(4), (Xk - mx).T @ (Yk - my))
        np.testing.assert_allclose(residuals[0, i], (Y[i] - (my + (X[i] - mx) @ F))[0], atol=1e-10)


def test_ridge_map_matches_normal_equations():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(6, 10)), rng.normal(size=(6, 3))
    F = _ridge_map(X, Y, 0.1)
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    lam = 0.1 * np.linalg.svd(Xc, compute_uv=False)[0] ** 2
    np.testing.assert_allclose(
        F, np.linalg.solve(Xc.T @ Xc + lam * np.eye(10), Xc.T @ Yc), atol=1e-10
    )


def _gain_transfer(seed: int, k: int):
    """Master spectra and a target instrument with a gain and an offset per point (what DS/PDS
    can learn); k transfer samples."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 30)).cumsum(axis=1)
    y = X[:, 5] - X[:, 20]
    y = (y - y.mean()) / y.std()
    gain = 1 + 0.2 * np.sin(np.arange(30) / 4)
    ids = np.random.default_rng(seed).choice(60, k, replace=False)
    arrays = {
        "X_master_transfer": X[ids],
        "X_target_transfer": X[ids] * gain + 0.3,
        "y_transfer": y[ids],
        "X_target_unlabelled": X * gain + 0.3,
    }
    return X, y, arrays


def test_auto_averages_the_better_half_of_its_candidates_by_cross_validated_rmse():
    from caltransfer_jax.methods.auto import AutoTransfer, CandidateMean
    from caltransfer_jax.methods.base import cross_validate_transfer
    from caltransfer_jax.methods.classical.pls import PLSRegressionCV
    from caltransfer_jax.methods.registry import METHODS

    X, y, arrays = _gain_transfer(0, 15)
    X_new = arrays["X_target_unlabelled"]
    master = PLSRegressionCV(seed=0).fit(X, y)
    candidates = ("sbc", "ds", "pds", "target_pls")
    auto = AutoTransfer(master, PLSRegressionCV(seed=0), {}, candidates=candidates).fit(
        X, y, **arrays
    )
    assert set(auto.criterion_) == set(candidates)
    ranked = sorted(auto.criterion_, key=auto.criterion_.get)
    assert auto.members_ == tuple(ranked[:2])
    assert auto.chosen_ == f"mean of {ranked[0]}, {ranked[1]}"

    def build(name):
        return lambda: METHODS[name].build(master, PLSRegressionCV(seed=0), {})

    for name in candidates:  # the criterion: the CV RMSE of `base.cross_validate_transfer`
        again = cross_validate_transfer(build(name), X, y, arrays, X[:0], 0)
        assert np.sqrt(np.mean(again[1] ** 2)) == pytest.approx(auto.criterion_[name])
    # The transfer: the mean of the two members, each fitted on all transfer samples.
    direct = [build(name)().fit(X, y, **arrays).predict(X_new) for name in auto.members_]
    np.testing.assert_allclose(auto.predict(X_new), np.mean(direct, axis=0), rtol=1e-12)
    # Its conformity scores: the mean's own held-out residuals (the same folds).
    members = [build(name) for name in auto.members_]
    mean_cv = cross_validate_transfer(
        lambda: CandidateMean(tuple(m() for m in members)), X, y, arrays, X[:0], 0
    )
    np.testing.assert_allclose(auto.conformity_scores_, mean_cv[1], rtol=1e-10, atol=1e-12)


def test_auto_zero_shot_picks_the_label_free_distribution_match():
    from scipy.stats import wasserstein_distance

    from caltransfer_jax.methods.auto import AutoZeroShot
    from caltransfer_jax.methods.classical.pls import PLSRegressionCV

    X, y = _spectra(80, 0)
    y = (y - y.mean()) / y.std()
    # The target pool: new samples of the same population on an instrument with an offset
    # spectrum (a baseline). Without correction the predictions shift; re-centring removes it.
    X_pool, y_pool = _spectra(60, 5)
    baseline = 0.05 + 0.3 * np.exp(-0.5 * ((GRID - 30.0) / 9.0) ** 2)  # on a calibration band
    master = PLSRegressionCV(max_components=6, seed=0).fit(X, y)
    candidates = ("no_transfer", "mean_recentring")
    auto = AutoZeroShot(master, PLSRegressionCV(seed=0), {}, candidates=candidates).fit(
        X, y, X_target_unlabelled=X_pool + baseline
    )
    assert auto.chosen_ == "mean_recentring"
    assert auto.criterion_["no_transfer"] > 5 * auto.criterion_["mean_recentring"]
    # The criterion: W1 between the target-pool predictions and the master's CV predictions.
    expected = wasserstein_distance(
        master.predict(X_pool + baseline).ravel(), y - master.cv_residuals_
    )
    assert auto.criterion_["no_transfer"] == pytest.approx(expected)
    # It needs the master's CV residuals on the spectra it is given, and never target labels.
    assert "y_transfer" not in AutoZeroShot.requires
    with pytest.raises(ValueError, match="cross-validated residuals"):
        AutoZeroShot(master, None, {}, candidates=candidates).fit(
            X[:40], y[:40], X_target_unlabelled=X_pool
        )


def test_auto_halves_an_odd_count_upwards_and_a_lone_candidate_is_the_transfer():
    from caltransfer_jax.methods.auto import AutoTransfer, CandidateMean
    from caltransfer_jax.methods.classical.pls import PLSRegressionCV
    from caltransfer_jax.methods.registry import METHODS

    X, y, arrays = _gain_transfer(1, 12)
    master = PLSRegressionCV(seed=0).fit(X, y)
    three = ("dipls_semisupervised", "ds", "target_pls")
    auto = AutoTransfer(master, PLSRegressionCV(seed=0), {}, candidates=three).fit(X, y, **arrays)
    assert len(auto.members_) == 2
    lone = AutoTransfer(master, PLSRegressionCV(seed=0), {}, candidates=("pds",))
    lone.fit(X, y, **arrays)
    assert lone.members_ == ("pds",) and lone.chosen_ == "pds"
    direct = METHODS["pds"].build(master, None, {}).fit(X, y, **arrays)
    X_new = arrays["X_target_unlabelled"]
    np.testing.assert_array_equal(lone.predict(X_new), direct.predict(X_new))
    with pytest.raises(ValueError, match="at least one member"):
        CandidateMean(()).fit(X, y, **arrays)
    few = {
        key: value[:3] if key != "X_target_unlabelled" else value for key, value in arrays.items()
    }
    with pytest.raises(ValueError, match="at least 4 transfer samples"):
        AutoTransfer(master, None, {}, candidates=three).fit(X, y, **few)
    # CV+ refits remake the choice (a fresh `auto`) unless model rows are candidates, whose
    # refits would take hours: then the mean is refitted with its members fixed.
    assert isinstance(auto.interval_builder()(), AutoTransfer)
    with_model = AutoTransfer(master, None, {}, candidates=("pds", "model_lora"))
    with_model.members_ = ("pds",)
    fixed = with_model.interval_builder()()
    assert isinstance(fixed, CandidateMean) and len(fixed.methods) == 1


def test_auto_counts_candidates_that_predict_alike_once(monkeypatch):
    """A model row whose guard hands over to semi-supervised di-PLS predicts as that candidate
    does: it must neither weigh di-PLS double in the mean nor push a distinct method out."""
    import dataclasses

    from caltransfer_jax.methods import registry
    from caltransfer_jax.methods.auto import AutoTransfer, distinct
    from caltransfer_jax.methods.classical.pls import PLSRegressionCV

    twin = dataclasses.replace(registry.METHODS["dipls_semisupervised"], name="dipls_twin")
    monkeypatch.setitem(registry.METHODS, "dipls_twin", twin)
    X, y, arrays = _gain_transfer(2, 15)
    master = PLSRegressionCV(seed=0).fit(X, y)
    four = ("dipls_semisupervised", "dipls_twin", "augmented_pls", "target_pls")
    auto = AutoTransfer(master, PLSRegressionCV(seed=0), {}, candidates=four).fit(X, y, **arrays)
    # Both were cross-validated, with identical figures, and rank first: counted twice, the
    # better half of four would be di-PLS alone; counted once, it is di-PLS and the next.
    assert auto.criterion_["dipls_twin"] == auto.criterion_["dipls_semisupervised"]
    assert min(auto.criterion_, key=auto.criterion_.get) == "dipls_semisupervised"
    second = min(("augmented_pls", "target_pls"), key=auto.criterion_.get)
    assert auto.members_ == ("dipls_semisupervised", second)  # half of 3 distinct
    without = AutoTransfer(
        master,
        PLSRegressionCV(seed=0),
        {},
        candidates=("dipls_semisupervised", "augmented_pls", "target_pls"),
    ).fit(X, y, **arrays)
    assert auto.members_ == without.members_
    X_new = arrays["X_target_unlabelled"]
    np.testing.assert_array_equal(auto.predict(X_new), without.predict(X_new))
    np.testing.assert_array_equal(auto.conformity_scores_, without.conformity_scores_)
    same = {"a": np.array([1.0, 2.0]), "b": np.array([1.0, 2.0]) + 1e-13, "c": np.array([1.0, 2.5])}
    assert distinct(["a", "b", "c"], same) == ["a", "c"]
    assert distinct(["c", "b", "a"], same) == ["c", "b"]


class _HandsOverOnAllK:
    """Semi-supervised di-PLS, offset by 0.01 unless fitted on all `k_all` transfer samples: a
    stand-in for a model row whose guard hands over only on the full set."""

    def __init__(self, master, k_all):
        from caltransfer_jax.methods.classical.dipls import SemiSupervisedDIPLS

        self.method = SemiSupervisedDIPLS(master)
        self.requires = self.method.requires
        self.k_all = k_all

    def fit(self, X, y, **transfer):
        self.method.fit(X, y, **transfer)
        self.offset_ = 0.0 if len(transfer["y_transfer"]) == self.k_all else 0.01
        return self

    def predict(self, X):
        return self.method.predict(X) + self.offset_


def test_auto_drops_members_that_predict_alike_only_when_fitted_on_all_k(monkeypatch):
    import dataclasses

    from caltransfer_jax.methods import registry
    from caltransfer_jax.methods.auto import AutoTransfer
    from caltransfer_jax.methods.classical.pls import PLSRegressionCV

    spec = dataclasses.replace(
        registry.METHODS["dipls_semisupervised"],
        name="hands_over",
        build=lambda master, pls, context: _HandsOverOnAllK(master, 15),
    )
    monkeypatch.setitem(registry.METHODS, "hands_over", spec)
    X, y, arrays = _gain_transfer(2, 15)
    master = PLSRegressionCV(seed=0).fit(X, y)
    three = ("dipls_semisupervised", "hands_over", "target_pls")
    auto = AutoTransfer(master, PLSRegressionCV(seed=0), {}, candidates=three).fit(X, y, **arrays)
    # Distinct in the cross-validation, both in the better half (2 of 3) ...
    assert auto.criterion_["hands_over"] != auto.criterion_["dipls_semisupervised"]
    assert (
        max(auto.criterion_["hands_over"], auto.criterion_["dipls_semisupervised"])
        < (auto.criterion_["target_pls"])
    )
    # ... alike on all k: one of them is the transfer, with its own held-out residuals.
    (kept,) = auto.members_
    assert kept in three[:2] and auto.chosen_ == kept
    assert len(auto.method_.estimators_) == len(auto.method_.methods) == 1
    alone = AutoTransfer(master, PLSRegressionCV(seed=0), {}, candidates=(kept,)).fit(
        X, y, **arrays
    )
    np.testing.assert_array_equal(auto.conformity_scores_, alone.conformity_scores_)
    X_new = arrays["X_target_unlabelled"]
    np.testing.assert_array_equal(auto.predict(X_new), alone.predict(X_new))


class _StraysOffTheTransferSamples(_HandsOverOnAllK):
    """Semi-supervised di-PLS (+0.001, so not a duplicate), and 10 label SDs off wherever the
    first feature exceeds `limit`: good on every transfer sample, wild on part of the pool."""

    def __init__(self, master, limit):
        super().__init__(master, k_all=None)
        self.limit = limit

    def predict(self, X):
        X = np.asarray(X)
        return self.method.predict(X) + 0.001 + 10.0 * (X[:, 0] > self.limit)


def test_auto_drops_a_member_that_strays_on_the_target_pool(monkeypatch):
    import dataclasses

    from caltransfer_jax.methods import registry
    from caltransfer_jax.methods.auto import AutoTransfer, CandidateMean
    from caltransfer_jax.methods.base import cross_validate_transfer
    from caltransfer_jax.methods.classical.pls import PLSRegressionCV
    from caltransfer_jax.methods.registry import METHODS

    X, y, arrays = _gain_transfer(2, 15)
    limit = arrays["X_target_transfer"][:, 0].max()
    assert np.mean(arrays["X_target_unlabelled"][:, 0] > limit) > 0.05  # a share of the pool
    spec = dataclasses.replace(
        registry.METHODS["dipls_semisupervised"],
        name="stray",
        build=lambda master, pls, context: _StraysOffTheTransferSamples(master, limit),
    )
    monkeypatch.setitem(registry.METHODS, "stray", spec)
    master = PLSRegressionCV(seed=0).fit(X, y)
    five = ("dipls_semisupervised", "stray", "gct_pls", "ds", "target_pls")
    auto = AutoTransfer(master, PLSRegressionCV(seed=0), {}, candidates=five).fit(X, y, **arrays)
    ranked = sorted(auto.criterion_, key=auto.criterion_.get)
    assert "stray" in ranked[:3]  # in the better half by cross-validation ...
    assert auto.strays_ == ("stray",)  # ... and dropped for what it does on the pool
    kept = tuple(name for name in ranked[:3] if name != "stray")
    assert auto.members_ == kept and auto.chosen_ == f"mean of {', '.join(kept)}"
    # The transfer and its conformity scores: those of the mean of the members kept.
    build = [
        lambda name=name: METHODS[name].build(master, PLSRegressionCV(seed=0), {}) for name in kept
    ]
    X_new = arrays["X_target_unlabelled"]
    direct = [make().fit(X, y, **arrays).predict(X_new) for make in build]
    np.testing.assert_allclose(auto.predict(X_new), np.mean(direct, axis=0), rtol=1e-12)
    mean_cv = cross_validate_transfer(
        lambda: CandidateMean(tuple(make() for make in build)), X, y, arrays, X[:0], 0
    )
    np.testing.assert_allclose(auto.conformity_scores_, mean_cv[1], rtol=1e-10, atol=1e-12)
    # Members that agree on the pool as their held-out errors allow are all kept.
    six = ("dipls_semisupervised", "gct_pls", "ds", "target_pls", "sbc", "augmented_pls")
    calm = AutoTransfer(master, PLSRegressionCV(seed=0), {}, candidates=six).fit(X, y, **arrays)
    assert calm.strays_ == () and len(calm.members_) == 3


def _checked(pool_predictions: dict, cv_rmse: dict):
    """An `auto` holding members with these pool predictions and CV RMSEs, after the check."""
    from caltransfer_jax.methods.auto import AutoTransfer, CandidateMean

    auto = AutoTransfer()
    auto.members_, auto.criterion_, auto.strays_ = tuple(pool_predictions), dict(cv_rmse), ()
    auto.method_ = CandidateMean(tuple(pool_predictions))
    auto.method_.estimators_ = list(pool_predictions)  # stand-ins, kept or dropped with names
    auto._drop_strays(np.array(list(pool_predictions.values())))
    return auto


def test_the_stray_check_drops_only_a_minority_of_three_or_more_members():
    on = np.zeros(3)
    # Two members lie equally far from their midpoint: never judged (the better one would go).
    two = _checked({"good": on, "bad": on + 1.6}, {"good": 0.1, "bad": 0.3})
    assert two.members_ == ("good", "bad") and two.strays_ == ()
    # One of five far off (30× its allowance): dropped; a non-finite one is always a stray.
    rmse = dict.fromkeys("abcde", 0.1)
    five = _checked({"a": on, "b": on + 0.01, "c": on - 0.01, "d": on, "e": on + 9.0}, rmse)
    assert five.members_ == ("a", "b", "c", "d") and five.strays_ == ("e",)
    nan = _checked({"a": on, "b": on + 0.01, "c": on - 0.01, "d": on + np.nan}, rmse)
    assert nan.strays_ == ("d",) and len(nan.method_.estimators_) == 3
    # Three of five beyond their allowance: no majority stands by the median, nothing dropped.
    spread = {"a": on, "b": on + 1.0, "c": on + 3.0, "d": on + 4.0, "e": on + 2.0}
    worst_in_the_middle = _checked(spread, {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.1, "e": 0.5})
    assert worst_in_the_middle.members_ == tuple(spread) and worst_in_the_middle.strays_ == ()
