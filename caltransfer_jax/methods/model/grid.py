"""Real spectra on the pretrained model's token grid.

The model was pretrained on a fixed master grid per modality (`config.data.master_grid`,
`num_points` points uniform in the modality's native unit). Real spectra are interpolated onto
the points of that grid inside their measured range (no extrapolation), padded to
`num_points` with the validity mask, and standardised per spectrum as in pretraining
(`models.inputs.to_grid`). Every spectrum of one instrument shares its axis, so the valid points
are the same for all of them.

The master and the target instrument may cover different ranges: both are read on the grid points
inside the range they share, and nothing else. A calibration transferred to the target can use
only what the target measures, and the encoder's context and the per-spectrum standardisation
must be the same for both instruments: where each read its own full range, the features of one
sample differed between the instruments by what the other does not see (on a simulated pair of
other ranges, the frozen head fell to R² −1800 and di-PLS on the features below mean
re-centring; BENCHMARKS.md §4.5).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from caltransfer_jax.data.spectra import MODALITIES, from_wavenumber, to_wavenumber
from caltransfer_jax.models.inputs import master_points, to_grid

# Batch key of the grid points the features are read at (see `ModelGrid.feature_index`).
FEATURE_INDEX = "feature_index"


class ModelGrid:
    """Maps (n, p) spectra on one physical axis to model inputs.

    Args:
        config: the pretraining config of the export (reads `data.master_grid`,
            `data.num_points`, `data.normalize`).
        wavenumber: (p,) axis of the spectra in cm⁻¹.
        modality: 'NIR', 'IR' or 'Raman'.
        other: (q,) axis of the other instrument of a pair, in cm⁻¹: both are then read on the
            range they share.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        wavenumber: np.ndarray,
        modality: str,
        other: np.ndarray | None = None,
    ):
        num_points = int(config.data.num_points)
        grid, unit = master_points(config.data.master_grid, modality, num_points)
        start, stop = grid[0], grid[-1]
        axis = from_wavenumber(np.asarray(wavenumber, dtype=np.float64), unit)
        order = np.argsort(axis)
        self._axis, self._order = axis[order], order
        inside = (grid >= self._axis[0]) & (grid <= self._axis[-1])
        if inside.sum() < 2:
            raise ValueError(
                f"spectra cover {self._axis[0]:.1f}-{self._axis[-1]:.1f} {unit}, outside the "
                f"model's {modality} grid {start}-{stop} {unit}"
            )
        if other is not None:
            other_axis = from_wavenumber(np.asarray(other, dtype=np.float64), unit)
            inside &= (grid >= other_axis.min()) & (grid <= other_axis.max())
            if inside.sum() < 2:
                raise ValueError(
                    f"the two instruments share fewer than 2 points of the model's {modality} "
                    f"grid ({self._axis[0]:.1f}-{self._axis[-1]:.1f} and "
                    f"{other_axis.min():.1f}-{other_axis.max():.1f} {unit})"
                )
        # The features are read at every valid point (a static count for the jitted heads).
        self.feature_index = np.arange(int(inside.sum()), dtype=np.int32)
        self._grid = grid[inside]
        self._wavenumber = to_wavenumber(self._grid, unit)
        self.num_points = num_points
        self.normalize = str(config.data.get("normalize", "snv"))
        self.modality = MODALITIES.index(modality)

    def __call__(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Model inputs for (n, p) spectra.

        Returns:
            values (n, L) float32, wavenumber (n, L) float32, valid (n, L) bool, modality (n,)
            int32 — L = `num_points`, the valid points first (ascending wavenumber) — the
            per-spectrum standardisation, offset (n,) and scale (n,): raw = values · scale +
            offset on the valid points, and feature_index (n, F) int32: where the features are
            read among the valid points.
        """
        values = np.asarray(values, dtype=np.float64)[:, self._order]
        rows = [
            to_grid(
                np.interp(self._grid, self._axis, v),
                self._wavenumber,
                self.num_points,
                normalize=self.normalize,
            )
            for v in values
        ]
        return {
            "values": np.stack([r["values"] for r in rows]),
            "wavenumber": np.stack([r["wavenumber"] for r in rows]),
            "valid": np.stack([r["valid"] for r in rows]),
            "modality": np.full(len(rows), self.modality, np.int32),
            "offset": np.array([r["offset"] for r in rows], np.float32),
            "scale": np.array([r["scale"] for r in rows], np.float32),
            FEATURE_INDEX: np.repeat(self.feature_index[None], len(rows), axis=0),
        }
