"""The common axis of instruments measured on different ranges or steps.

Classical transfer compares the master and target spectra point by point, so they need one axis.
`common_axis` takes the range every instrument covers and, inside it, the points of the
instrument with the fewest there (the coarsest), so that no instrument is interpolated onto a
finer grid than it measured and nothing is extrapolated; `on_common_axis` resamples each
instrument onto it (an instrument already on it is left unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from caltransfer_jax.data.spectra import Spectra, SpectraError, from_wavenumber, same_axis

# Fewer common points than this cannot carry a calibration.
MIN_COMMON_POINTS = 10


def common_axis(parts: Mapping[str, Spectra], origin: str) -> tuple[np.ndarray, str]:
    """The shared wavenumber grid of several instruments, and a sentence describing it.

    Args:
      parts: instrument -> its spectra (each on its own axis).
      origin: named in errors (the data set file).

    Raises:
      SpectraError: the ranges do not overlap, or the overlap holds too few points.
    """
    unit = next(iter(parts.values())).unit

    def span(wavenumber: np.ndarray) -> str:
        ends = np.sort(from_wavenumber(np.array([wavenumber.min(), wavenumber.max()]), unit))
        return f"{ends[0]:.6g}–{ends[1]:.6g} {unit}"

    ranges = ", ".join(f"{name} {span(p.wavenumber)}" for name, p in parts.items())
    grid, coarsest = overlap_points({name: p.wavenumber for name, p in parts.items()})
    if grid is None:
        raise SpectraError(f"{origin}: the instruments' ranges do not overlap ({ranges})")
    if grid.size < MIN_COMMON_POINTS:
        raise SpectraError(
            f"{origin}: the instruments' common range holds {grid.size} point(s) of "
            f"{coarsest!r}, fewer than {MIN_COMMON_POINTS} ({ranges})"
        )
    first = next(iter(parts.values())).wavenumber
    if first[0] > first[-1]:
        grid = grid[::-1]  # keep the data's own direction
    sentence = (
        f"instruments measured {ranges}; classical methods use their common range "
        f"{span(grid)} on the {grid.size} points of {coarsest!r} there"
    )
    return grid, sentence


def overlap_points(axes: Mapping[str, np.ndarray]) -> tuple[np.ndarray | None, str]:
    """(ascending wavenumbers of the coarsest axis inside the range every axis covers, that
    axis's name); (None, '') where the ranges do not overlap."""
    lo = max(float(w.min()) for w in axes.values())
    hi = min(float(w.max()) for w in axes.values())
    if lo >= hi:
        return None, ""
    tol = 1e-9 * hi
    inside = {name: np.sort(w[(w >= lo - tol) & (w <= hi + tol)]) for name, w in axes.items()}
    coarsest = min(inside, key=lambda name: inside[name].size)
    return np.clip(inside[coarsest], lo, hi), coarsest


def on_common_axis(parts: Mapping[str, Spectra], grid: np.ndarray) -> dict[str, Spectra]:
    """Every instrument's spectra on `grid` (linear interpolation, never extrapolation)."""
    return {
        name: p if same_axis(p.wavenumber, grid) else p.resample(grid) for name, p in parts.items()
    }
