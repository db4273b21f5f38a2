"""What the spectral model reads: one spectrum on the fixed token grid, and the batch keys.

Every path that feeds the model (pretraining batches, real spectra at evaluation and in the
transfer methods) puts spectra on the grid with `to_grid` and names the arrays with the keys
below, so they are defined once.
"""

from __future__ import annotations

import numpy as np

from caltransfer_jax.data.spectra import from_wavenumber, to_wavenumber

# Keys of a model input batch: values (b, L), wavenumber (b, L), valid (b, L), modality (b,),
# and the per-spectrum standardisation offset (b,) and scale (b,).
VALUES, WAVENUMBER, VALID, MODALITY = "values", "wavenumber", "valid", "modality"
OFFSET, SCALE = "offset", "scale"
GRID_KEYS = (VALUES, WAVENUMBER, VALID, OFFSET, SCALE)
NORMALIZATIONS = ("snv", "none")


def to_grid(
    values: np.ndarray,
    wavenumber: np.ndarray,
    num_points: int,
    rng: np.random.Generator | None = None,
    normalize: str = "snv",
) -> dict[str, np.ndarray]:
    """Puts one spectrum on the fixed token grid (also for real spectra at evaluation).

    Args:
      values: (p,) spectrum.
      wavenumber: (p,) its axis in cm⁻¹, monotonic in either direction.
      num_points: grid length L.
      rng: draws the window when p > L (None: the centre window).
      normalize: 'snv' (standardise over the valid points) or 'none'.

    Returns:
      values (L,) float32, wavenumber (L,) float32 ascending over the valid points (0 in the
      padding), valid (L,) bool, offset () and scale () float32 with
      values = (raw - offset) / scale on the valid points.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    values = np.asarray(values, dtype=np.float32)
    wavenumber = np.asarray(wavenumber, dtype=np.float32)
    if wavenumber[0] > wavenumber[-1]:
        values, wavenumber = values[::-1], wavenumber[::-1]
    p = values.size
    if p > num_points:
        start = (p - num_points) // 2 if rng is None else int(rng.integers(0, p - num_points + 1))
        values, wavenumber = (
            values[start : start + num_points],
            wavenumber[start : start + num_points],
        )
        p = num_points
    offset, scale = np.float32(0.0), np.float32(1.0)
    if normalize == "snv":
        offset, std = values.mean(), values.std()
        scale = np.float32(std if std > 1e-8 else 1.0)  # a flat spectrum is only centred
    out_values = np.zeros(num_points, np.float32)
    out_wn = np.zeros(num_points, np.float32)
    valid = np.zeros(num_points, bool)
    out_values[:p] = (values - offset) / scale
    out_wn[:p] = wavenumber
    valid[:p] = True
    return {
        VALUES: out_values,
        WAVENUMBER: out_wn,
        VALID: valid,
        OFFSET: np.float32(offset),
        SCALE: np.float32(scale),
    }


def master_points(master_grid, modality: str, num_points: int) -> tuple[np.ndarray, str]:
    """The points of a modality's master grid, in its native unit, and that unit.

    Args:
      master_grid: modality -> (native unit, start, stop) (a pretraining config's
        `data.master_grid`); the grid is `num_points` points uniform from start to stop.
    """
    unit, start, stop = master_grid[modality]
    return np.linspace(float(start), float(stop), num_points), str(unit)


def to_master_grid(
    values: np.ndarray,
    wavenumber: np.ndarray,
    points: np.ndarray,
    unit: str,
    normalize: str = "snv",
    span: tuple[float, float] | None = None,
) -> dict[str, np.ndarray]:
    """One spectrum read at the master-grid points inside its range, then put on the token grid.

    This is how the model methods read real spectra (`methods.model.grid.ModelGrid`): linear
    interpolation at the grid points the spectrum covers, never extrapolated; the token grid has
    `points.size` slots and the points outside the range are padding.

    Args:
      values: (p,) spectrum; wavenumber: (p,) its axis in cm⁻¹.
      points, unit: `master_points` of the spectrum's modality.
      normalize: as `to_grid`.
      span: (low, high) in `unit`: read only the points inside it as well (the range two
        instruments share, as the model methods read a pair).

    Raises:
      ValueError: the spectrum covers fewer than 2 grid points (inside `span`).
    """
    axis = from_wavenumber(np.asarray(wavenumber, dtype=np.float64), unit)
    order = np.argsort(axis)
    axis = axis[order]
    low, high = (
        (axis[0], axis[-1]) if span is None else (max(axis[0], span[0]), min(axis[-1], span[1]))
    )
    inside = points[(points >= low) & (points <= high)]
    if inside.size < 2:
        raise ValueError(
            f"a spectrum over {axis[0]:.1f}-{axis[-1]:.1f} {unit} covers fewer than 2 points of "
            f"the master grid {points[0]:.1f}-{points[-1]:.1f} {unit}"
        )
    read = np.interp(inside, axis, np.asarray(values, dtype=np.float64)[order])
    return to_grid(read, to_wavenumber(inside, unit), points.size, normalize=normalize)
