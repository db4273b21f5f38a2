"""A transfer data set: the same samples measured on several instruments.

`Dataset.spectra` holds every instrument's spectra stacked on one axis — what the classical
methods compare point by point. Where the instruments were measured on different axes (other
ranges or steps), that axis is their common overlap (`grids.common_axis`: resampled, never
extrapolated) and `Dataset.native` keeps each instrument's spectra on its own axis, which the
model methods read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from caltransfer_jax.data.spectra import Spectra, SpectraError


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

    def labelled(self, properties) -> np.ndarray:
        """Sample ids (sorted) that have a value of every one of `properties`."""
        keep = np.ones(self.spectra.n, bool)
        for name in properties:
            keep &= self.spectra.has_label(name)
        return np.unique(self.spectra.sample_id[keep])
