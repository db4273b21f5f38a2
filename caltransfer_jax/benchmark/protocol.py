"""The transfer protocol: splits, transfer-sample draws and the data each method may see.

A split divides the samples into a *pool* and a *test* set. The pool is what a lab owns before the
transfer: labelled spectra of the pool samples on the master instrument, and unlabelled spectra of
the same samples on the target instrument. Transfer samples (k of them, chosen by Kennard–Stone on
the master spectra or at random) come from the pool only; their target spectra and reference
values become known. Test samples are seen only at prediction time. Every id a method is fitted
on is recorded, so leaks can be checked from the output alone.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from caltransfer_jax.data.spectra import Spectra, check_unique_ids
from caltransfer_jax.methods.classical.selection import kennard_stone, random_draw

# What identifies a benchmark record (one fitted and evaluated transfer); records are sorted by
# it and predictions carry it. A cell of the report is (source, target, property).
CELL_KEY = ("source", "target", "property")
RECORD_KEY = (*CELL_KEY, "method", "k", "selection", "split", "draw")


@dataclasses.dataclass(frozen=True)
class Split:
    """Sample ids of the pool (labelled on the master) and of the held-out test set."""

    index: int
    pool: tuple[str, ...]
    test: tuple[str, ...]
    origin: str  # 'original' (the data set's own split) or 'random'


@dataclasses.dataclass(frozen=True)
class TransferSet:
    """The k pool samples whose target spectra and labels a method may use."""

    split: int
    k: int
    selection: str  # 'kennard_stone' or 'random'
    draw: int
    ids: tuple[str, ...]


def make_splits(
    sample_ids: np.ndarray,
    n_splits: int,
    test_fraction: float,
    seed: int,
    original: dict[str, str] | None = None,
) -> list[Split]:
    """Pool/test splits; split 0 is the data set's own split when it has one.

    With an original split, its test set stays the test set of split 0 and every other
    original subset joins the pool; further splits are random with the same sizes.
    """
    ids = np.unique(np.asarray(sample_ids))
    splits = []
    n_test = round(test_fraction * ids.size)
    if original is not None:
        missing = set(ids.tolist()) - set(original)
        if missing:
            raise ValueError(f"original split lacks {len(missing)} sample ids, e.g. {min(missing)}")
        test = tuple(sorted(s for s in ids.tolist() if original[s] == "test"))
        pool = tuple(sorted(s for s in ids.tolist() if original[s] != "test"))
        splits.append(Split(0, pool, test, "original"))
        n_test = len(test)
    if not 0 < n_test < ids.size:
        raise ValueError(f"test set of {n_test} out of {ids.size} samples is not a split")
    for index in range(len(splits), n_splits):
        order = np.random.default_rng([seed, index]).permutation(ids.size)
        test = tuple(sorted(ids[order[:n_test]].tolist()))
        pool = tuple(sorted(ids[order[n_test:]].tolist()))
        splits.append(Split(index, pool, test, "random"))
    return splits


def make_transfer_sets(
    split: Split,
    master_pool: np.ndarray,
    ks,
    n_draws: int,
    use_kennard_stone: bool,
    seed: int,
) -> list[TransferSet]:
    """Transfer sets for every k > 0: Kennard–Stone on the master pool spectra, and random draws.

    Args:
      split: the split whose pool the samples come from.
      master_pool: (len(split.pool), p) master spectra of the pool, in `split.pool` order.
      ks: numbers of transfer samples (k = 0 needs no set and is skipped).
      n_draws: random draws per k.
      use_kennard_stone: whether to add the Kennard–Stone set.
      seed: base seed; a draw's generator depends on (seed, split, k, draw) only.
    """
    pool = np.asarray(split.pool)
    sets = []
    for k in ks:
        if k == 0:
            continue
        if k > pool.size:
            raise ValueError(
                f"k = {k} exceeds the pool of {pool.size} samples in split {split.index}"
            )
        if use_kennard_stone:
            chosen = pool[kennard_stone(master_pool, k)]
            sets.append(TransferSet(split.index, k, "kennard_stone", 0, tuple(chosen.tolist())))
        for draw in range(n_draws):
            rng = np.random.default_rng([seed, split.index, k, draw])
            chosen = pool[random_draw(pool.size, k, rng)]
            sets.append(TransferSet(split.index, k, "random", draw, tuple(chosen.tolist())))
    return sets


class PairedData:
    """Row lookup by sample id for the spectra of one instrument pair."""

    def __init__(self, spectra: Spectra, source: str, target: str):
        self._index(spectra.on_instrument(source), spectra.on_instrument(target))

    @classmethod
    def from_parts(cls, source: Spectra, target: Spectra) -> PairedData:
        """From the two instruments' spectra, each on its own axis."""
        data = cls.__new__(cls)
        data._index(source, target)
        return data

    def _index(self, source: Spectra, target: Spectra) -> None:
        for part in (source, target):
            check_unique_ids(part)  # a repeated id would pair the wrong rows
        self.source, self.target = source, target
        self._rows = {
            name: {s: i for i, s in enumerate(part.sample_id.tolist())}
            for name, part in (("source", self.source), ("target", self.target))
        }

    def rows(self, side: str, ids) -> np.ndarray:
        lookup = self._rows[side]
        missing = [s for s in ids if s not in lookup]
        if missing:
            origin = getattr(self, side).origin
            raise ValueError(f"{origin}: no {side} spectrum for sample(s) {missing[:5]}")
        return np.asarray([lookup[s] for s in ids], dtype=int)

    def values(self, side: str, ids) -> np.ndarray:
        return getattr(self, side).values[self.rows(side, ids)]

    def labels(self, prop: str, ids) -> np.ndarray:
        # Reference values belong to the sample; they are read from the master side.
        return self.source.label(prop, self.rows("source", ids))


def check_no_leak(split: Split, fitted_ids, origin: str) -> None:
    """Raises if any id used for fitting or selection is a test id of the split."""
    leaked = set(fitted_ids) & set(split.test)
    if leaked:
        raise AssertionError(f"{origin}: test sample(s) used for fitting: {sorted(leaked)[:5]}")
