"""How many transfer samples? A learning curve estimated from the user's own k samples.

`estimate_learning_curve` refits a transfer method on subsets of m < k of the user's transfer
samples and measures its error on the samples left out, then fits MSE(m) = a + b·m^(−c); the
result answers `k_for_tolerance(rmse)` with a bootstrap range. Design, and why:

* Repeated K-fold: each repeat splits the k samples into `folds` folds; with one fold held out,
  the method is refitted on nested random subsets of m of the other samples. Every sample is
  held out once per repeat at every m, so each RMSE(m) pools k residuals rather than the few
  left over by one subset, and nesting makes the differences between sizes less noisy. The
  largest size is k − ⌈k / folds⌉; a k beyond it is an extrapolation of the fitted curve.
* Held-out samples are new to every refit, as test samples are: rows of the master calibration
  X and of the unlabelled target spectra identical to a held-out sample's spectra are dropped,
  and the master calibration is refitted without them (a calibration's errors on its own
  calibration samples are optimistic). Rows that are not identical cannot be recognised.
* MSE(m) = a + b·m^(−c): an error floor a plus an estimation term (c = 1 is the parametric
  rate; under-determined fits such as direct standardisation with m < p fall faster). It is
  fitted by weighted least squares with a, b ≥ 0 and c on a grid.
* Uncertainty: the repeats (their random subsets; use several) and the k held-out samples are
  resampled with replacement (a sample keeps its residuals at every m, which move together) and
  the curve refitted; its weights are 1 / the bootstrap variance of each MSE(m). Refits on
  subsets of the k samples cannot see the error that all k share: for an estimate that is a
  mean over samples, subsets of m scatter around the k samples' own mean with variance
  ∝ 1/m − 1/k, so the measured curve is b/m shifted by the shared error (realised MSE
  ≈ b·k^(−c)) less its expectation. The shift cancels on average but not in one data set, so
  each bootstrap floor also gets b·k^(−c)·(χ²₁ − 1): a shared error in one direction, the
  widest case.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np
from scipy.optimize import nnls
from sklearn.base import clone

EXPONENTS = np.linspace(0.25, 4.0, 16)  # the grid of c in MSE(m) = a + b·m^(−c)
_PAIRED = ("X_master_transfer", "X_target_transfer", "y_transfer")


@dataclasses.dataclass(frozen=True)
class LearningCurve:
    """Held-out error of a transfer method against the number m of transfer samples (y units)."""

    sizes: np.ndarray  # (s,) the m the method was refitted on
    rmse: np.ndarray  # (s,) held-out RMSE at each m, pooled over the k samples and the repeats
    rmse_sd: np.ndarray  # (s,) its standard deviation over the bootstrap resamples
    params: tuple[float, float, float]  # (a, b, c) of MSE(m) = a + b·m^(−c)
    boot_params: np.ndarray  # (n_boot, 3) the same per bootstrap resample, floor shifted

    def in_units(self, scale: float) -> LearningCurve:
        """The same curve for values multiplied by `scale` (e.g. back from standardised labels)."""
        squared = np.array([scale**2, scale**2, 1.0])
        return dataclasses.replace(
            self,
            rmse=self.rmse * scale,
            rmse_sd=self.rmse_sd * scale,
            params=tuple(float(v) for v in np.asarray(self.params) * squared),
            boot_params=self.boot_params * squared,
        )

    def predict(self, m) -> np.ndarray:
        """RMSE of the fitted curve at m transfer samples."""
        a, b, c = self.params
        return np.sqrt(a + b * np.asarray(m, dtype=np.float64) ** -c)

    def k_for_tolerance(self, tolerance: float, level: float = 0.9) -> tuple[float, float, float]:
        """(k, low, high): the k at which the fitted RMSE falls to `tolerance`, and the central
        `level` range of that k over the bootstrap fits. inf where the fitted floor √a is at or
        above the tolerance; k above `sizes.max()` is an extrapolation."""
        if not tolerance > 0:
            raise ValueError(f"tolerance must be a positive RMSE; got {tolerance}")
        if not 0 < level < 1:
            raise ValueError(f"level must be between 0 and 1; got {level}")
        k = _k_at(np.array([self.params]), tolerance)[0]
        boot = _k_at(self.boot_params, tolerance)
        # Bounds are draws, not interpolations (an infinite draw must not make a bound NaN).
        low = np.quantile(boot, (1 - level) / 2, method="lower")
        high = np.quantile(boot, (1 + level) / 2, method="higher")
        return float(k), float(low), float(high)


def estimate_learning_curve(
    build,
    master,
    X,
    y,
    transfer: dict,
    *,
    sizes=None,
    min_size: int = 5,
    folds: int = 5,
    repeats: int = 5,
    n_boot: int = 200,
    seed: int = 0,
) -> LearningCurve:
    """The learning curve of a transfer method from its k transfer samples (see the module).

    Args:
      build: a fitted master calibration -> an unfitted transfer method, e.g.
        `lambda fitted: registry.METHODS["ds"].build(fitted, pls, {})`.
      master: the master calibration estimator (e.g. `PLSRegressionCV()`), cloned and refitted on
        X, y without each fold's held-out samples.
      X, y: the master calibration spectra and values.
      transfer: the method's keyword arrays (`methods.base`); `X_target_transfer` and
        `y_transfer` (and `X_master_transfer` where given) are the k paired transfer samples.
      sizes: the m to refit on (default: 6 geometric steps from `min_size` to k − ⌈k / folds⌉).
      folds, repeats: the K-fold splits of the k samples and how many times they are redrawn.
      n_boot: bootstrap resamples for the uncertainty.
      seed: seeds folds, subsets and bootstrap.
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64).ravel()
    transfer = {
        key: np.asarray(value, dtype=np.float64)
        for key, value in transfer.items()
        if value is not None
    }
    if "y_transfer" not in transfer or "X_target_transfer" not in transfer:
        raise ValueError("transfer needs X_target_transfer and y_transfer (the labelled samples)")
    k = len(transfer["y_transfer"])
    if any(len(transfer[key]) != k for key in _PAIRED if key in transfer):
        raise ValueError(f"{[key for key in _PAIRED if key in transfer]} must have k rows each")
    if folds < 2 or repeats < 1 or n_boot < 1:
        raise ValueError(
            f"need folds ≥ 2, repeats ≥ 1, n_boot ≥ 1; got {folds}, {repeats}, {n_boot}"
        )
    largest = k - math.ceil(k / folds)
    if sizes is None:
        sizes = np.geomspace(min_size, max(largest, min_size), 6).round()
    sizes = np.unique(np.asarray(sizes, dtype=int))
    if sizes.size < 3 or sizes[0] < 2 or sizes[-1] > largest:
        raise ValueError(
            f"k = {k} transfer samples with {folds} folds allow sizes 2…{largest}; the curve "
            f"needs at least 3 distinct sizes in that range, got {sizes.tolist()} (more "
            "transfer samples, a smaller min_size or more folds)"
        )
    in_master = _matching_rows(X, transfer.get("X_master_transfer"), k)
    in_unlabelled = _matching_rows(
        transfer.get("X_target_unlabelled"), transfer["X_target_transfer"], k
    )
    shared = {key: value for key, value in transfer.items() if key not in _PAIRED}
    rng = np.random.default_rng(seed)
    squared = np.empty((repeats, sizes.size, k))  # squared held-out residual per repeat, m, sample
    for repeat in range(repeats):
        fold_of = rng.permutation(k) % folds
        for fold in range(folds):
            held = np.flatnonzero(fold_of == fold)
            order = rng.permutation(np.flatnonzero(fold_of != fold))  # nested subsets: prefixes
            drop = np.concatenate([in_master[i] for i in held])
            X_fold, y_fold = np.delete(X, drop, axis=0), np.delete(y, drop)
            fitted = clone(master).fit(X_fold, y_fold)
            arrays = dict(shared)
            if "X_target_unlabelled" in arrays:
                drop = np.concatenate([in_unlabelled[i] for i in held])
                arrays["X_target_unlabelled"] = np.delete(
                    arrays["X_target_unlabelled"], drop, axis=0
                )
            for j, m in enumerate(sizes):
                subset = {key: transfer[key][order[:m]] for key in _PAIRED if key in transfer}
                method = build(fitted).fit(X_fold, y_fold, **arrays, **subset)
                predicted = method.predict(transfer["X_target_transfer"][held])
                squared[repeat, j, held] = (transfer["y_transfer"][held] - predicted) ** 2
    mse = squared.mean(axis=(0, 2))
    # Two-way bootstrap: repeats (the random subsets) and held-out samples, each resampled
    # with replacement; a draw's MSE(m) is the count-weighted mean of the squared residuals.
    repeat_counts = rng.multinomial(repeats, np.full(repeats, 1 / repeats), size=n_boot)
    sample_counts = rng.multinomial(k, np.full(k, 1 / k), size=n_boot)
    boot_mse = np.einsum("br,rsk,bk->bs", repeat_counts, squared, sample_counts) / (repeats * k)
    sd = boot_mse.std(axis=0)
    scale = sd.max()
    weights = np.ones_like(sd) if scale == 0 else (scale / np.maximum(sd, 1e-6 * scale)) ** 2
    boot = np.array([_fit_curve(sizes, row, weights) for row in boot_mse])
    common = boot[:, 1] * k ** -boot[:, 2] * (rng.standard_normal(n_boot) ** 2 - 1)
    boot[:, 0] = np.maximum(boot[:, 0] + common, 0)  # the error all k samples share (above)
    return LearningCurve(
        sizes=sizes,
        rmse=np.sqrt(mse),
        rmse_sd=np.sqrt(boot_mse).std(axis=0),
        params=_fit_curve(sizes, mse, weights),
        boot_params=boot,
    )


def _fit_curve(sizes, mse, weights) -> tuple[float, float, float]:
    """(a, b, c) of MSE(m) = a + b·m^(−c): weighted non-negative least squares per grid c."""
    root = np.sqrt(weights)
    best = (math.inf, 0.0, 0.0, 1.0)
    for c in EXPONENTS:
        design = np.c_[np.ones(sizes.size), sizes**-c] * root[:, None]
        (a, b), residual = nnls(design, mse * root)
        if residual < best[0]:
            best = (residual, a, b, c)
    return float(best[1]), float(best[2]), float(best[3])


def _k_at(params: np.ndarray, tolerance: float) -> np.ndarray:
    """m where a + b·m^(−c) = tolerance² for each row (a, b, c); inf where a ≥ tolerance²."""
    a, b, c = params.T
    gap = tolerance**2 - a
    reachable = gap > 0
    return np.where(reachable, (b / np.where(reachable, gap, 1.0)) ** (1 / c), np.inf)


def _matching_rows(A, B, k: int) -> list[np.ndarray]:
    """For each of the k rows of B, the indices of the rows of A identical to it (none if absent)."""
    if A is None or B is None:
        return [np.zeros(0, dtype=int)] * k
    index = collections.defaultdict(list)
    for i, row in enumerate(np.ascontiguousarray(A)):
        index[row.tobytes()].append(i)
    return [np.array(index.get(row.tobytes(), []), dtype=int) for row in np.ascontiguousarray(B)]
