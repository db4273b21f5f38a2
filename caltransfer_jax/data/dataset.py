"""A transfer data set: the same samples measured on several instruments.

`Dataset.spectra` holds every instrument's spectra stacked on one axis — what the classical
methods compare point by point. Where the instruments were measured on different axes (other
ranges or steps), that axis is their common overlap (`grids.common_axis`: resampled, never
extrapolated) and `Dataset.native` keeps each instrument's spectra on its own axis, which the
model methods read. A pair of instruments is compared on the overlap of those two
(`Dataset.pair`), which can be wider than that of all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from caltransfer_jax.data import grids
from caltransfer_jax.data.spectra import Spectra, SpectraError, same_axis


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A transfer data set.

    Attributes:
      name: short name (e.g. 'corn'), recorded in every benchmark record.
      spectra: every instrument's spectra stacked on one axis; equal sample ids are the same
        sample.
      instruments: instrument ids in a fixed order (corn: m5, mp5, mp6; tablets: spec1, spec2).
      properties: the label names (corn: moisture, oil, protein, starch; tablets: weight,
        hardness, assay).
      standards: transfer standards measured on each instrument, without labels (corn: the NBS
        glass standards), on the axis of `spectra`, or None.
      original_split: sample id -> 'calibrate' | 'validate' | 'test' where the data set comes
        with a split (tablets), else None.
      citation: how to cite the data.
      native: instrument -> its spectra on its own axis, where the instruments' axes differ
        (then `spectra` is on their common overlap); None when all share one axis.
      overlap: a sentence on the common axis where `native` is set ('' otherwise).
    """

    name: str
    spectra: Spectra
    instruments: tuple[str, ...]
    properties: tuple[str, ...]
    standards: Spectra | None
    original_split: dict[str, str] | None
    citation: str
    native: Mapping[str, Spectra] | None = None
    overlap: str = ""

    def own(self, instrument: str) -> Spectra:
        """One instrument's spectra on its own axis (the native ones where they differ)."""
        if instrument not in self.instruments:
            raise SpectraError(
                f"{self.name}: no instrument {instrument!r}; instruments are "
                f"{list(self.instruments)}"
            )
        if self.native is not None:
            return self.native[instrument]
        return self.spectra.on_instrument(instrument)

    def pair(self, source: str, target: str) -> tuple[Spectra, Spectra, str]:
        """Two instruments' spectra on one axis for the classical methods, and a sentence on it
        ('' where the instruments share their axis).

        Where the axes differ, the axis is the overlap of these two instruments
        (`grids.common_axis`), not of every instrument of the data set — a third instrument with
        a narrower range does not cut this pair's — except where the data set has transfer
        standards, which are kept on the common axis of all instruments only.
        """
        if self.native is None or self.standards is not None:
            spectra = (self.spectra.on_instrument(source), self.spectra.on_instrument(target))
            return *spectra, self.overlap
        parts = {source: self.own(source), target: self.own(target)}
        if same_axis(parts[source].wavenumber, parts[target].wavenumber):
            return parts[source], parts[target], ""
        grid, sentence = grids.common_axis(parts, self.name)
        on = grids.on_common_axis(parts, grid)
        axis = on[source].wavenumber
        return on[source], dataclasses.replace(on[target], wavenumber=axis), sentence

    def labelled(self, properties) -> np.ndarray:
        """Sample ids (sorted) that have a value of every one of `properties`."""
        keep = np.ones(self.spectra.n, bool)
        for name in properties:
            keep &= self.spectra.has_label(name)
        return np.unique(self.spectra.sample_id[keep])
