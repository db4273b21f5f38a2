"""The simulated corpus: product families, samples (Beer–Lambert mixtures + scatter), measurements.

Everything is a pure function of (seed, index): component c, instrument i, family f and sample n
each draw from their own generator `default_rng([seed, stream, id])`, so any sample can be
generated alone, in any order, on any host (random access), and a batch is the same as its
samples generated one by one.

- A **family** is a product type (like "corn" or "a tablet formulation"): a modality, 2–8 pure
  components from the component library, a base composition, how widely samples vary around it,
  a path-length range and typical scatter.
- A **sample** draws a composition (Dirichlet around the family base; mass fractions summing to
  1), a path length and its own scatter, then is measured on `views_per_sample` distinct
  instruments of its modality, each with per-measurement jitter and noise.
- Absorbance follows Beer–Lambert, A(ν) = path · Σ_c conc_c · ε_c(ν), then scatter:
  A_s = b·A + a0 + a1·((λ/λ_ref)^p - 1) (multiplicative MSC-like b, additive offset and
  wavelength-dependent scatter). Raman intensities are additive the same way, on a fluorescence
  background instead of scatter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from caltransfer_jax.data.spectra import MODALITIES, Spectra
from caltransfer_jax.simulate import bands
from caltransfer_jax.simulate.instruments import (
    EFFECTS,
    FINE_GRIDS,
    TEMPLATES,
    Instrument,
    Jitter,
    draw_jitter,
    make_instrument,
    measure,
)

FAMILY_STREAM, SAMPLE_STREAM, THERMAL_STREAM, FAMILY_SAMPLE_STREAM = 2, 3, 4, 5
# The `temperature` effect: per kelvin, component c's bands move by β_c (SD below, in the fine
# grid's unit: nm for NIR, cm⁻¹ for IR) and change in strength by a fraction γ_c, both drawn per
# component from (seed, THERMAL_STREAM, c).
THERMAL_SHIFT = {"NIR": 0.4, "IR": 0.05, "Raman": 0.0}
THERMAL_INTENSITY = 4e-3

# Kinds of family per modality: (probability, path-length range (log-uniform), scatter offset
# range). Path is in absorbance units at unit concentration for the strongest band of a
# component. NIR families are reflectance-like (thin, low offset, like ground grain) or dense
# transmission-like (thick, offset 1–4 AU, like tablets in transmission); Raman "path" is the
# collection efficiency.
KINDS = {
    "NIR": ((0.65, (0.05, 2.0), (0.0, 0.6)), (0.35, (0.5, 8.0), (1.0, 4.0))),
    "IR": ((1.0, (0.05, 1.5), (-0.02, 0.1)),),
    "Raman": ((1.0, (0.2, 5.0), (0.0, 0.0)),),
}
LAMBDA_REF_UM = {"NIR": 1.0, "IR": 10.0}
# Wavelength-dependent scatter a1·((λ/λ_ref)^p - 1) and the spread of samples around the family.
SCATTER = {
    "NIR": {
        "amplitude": (-0.1, 0.6),
        "power": (-2.0, 2.0),
        "multiplicative_sd": (0.02, 0.2),
        "offset_sd": (0.0, 0.1),
    },
    "IR": {
        "amplitude": (-0.05, 0.1),
        "power": (0.0, 2.0),
        "multiplicative_sd": (0.02, 0.15),
        "offset_sd": (0.0, 0.02),
    },
}
FLUORESCENCE = {"amplitude": (0.01, 20.0), "center": (1000.0, 6000.0), "width": (1500.0, 6000.0)}


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    """Settings of the simulated corpus.

    Attributes:
      seed: corpus seed; with the rest of the config it fixes every component, instrument,
        family and sample.
      num_components: size of the pure-component library.
      num_families: number of product families.
      max_components: largest number of components in a family (width of concentration arrays).
      instruments_per_modality: instruments per modality, in `MODALITIES` order; global ids run
        over NIR first, then IR, then Raman. Instrument k of a modality is of template
        k mod (number of templates).
      modality_weights: probability of each modality for a family.
      views_per_sample: instruments each sample is measured on (distinct, same modality).
    """

    seed: int = 0
    num_components: int = 512
    num_families: int = 1024
    max_components: int = 8
    instruments_per_modality: tuple[int, int, int] = (10, 3, 3)
    modality_weights: tuple[float, float, float] = (0.6, 0.2, 0.2)
    views_per_sample: int = 2

    def __post_init__(self):
        if self.max_components < 2:
            raise ValueError(f"max_components must be >= 2, got {self.max_components}")
        if self.num_components < self.max_components:
            raise ValueError("num_components must be >= max_components")
        weights = np.asarray(self.modality_weights, dtype=float)
        counts = np.asarray(self.instruments_per_modality)
        if weights.shape != (3,) or counts.shape != (3,) or np.any(weights < 0):
            raise ValueError("modality_weights and instruments_per_modality need 3 entries >= 0")
        short = [
            MODALITIES[m] for m in range(3) if weights[m] > 0 and counts[m] < self.views_per_sample
        ]
        if short:
            raise ValueError(
                f"views_per_sample={self.views_per_sample} but modalities {short} have fewer "
                "instruments"
            )


@dataclasses.dataclass(frozen=True)
class Family:
    """A product family (see the module docstring)."""

    family_id: int
    modality: str
    component_ids: np.ndarray  # (k,)
    base: np.ndarray  # (k,) base composition, sums to 1
    precision: float  # Dirichlet precision: larger = samples closer to the base
    path: float  # typical path length
    scatter: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Sample:
    """One sample's draws: composition, path, scatter, instruments and their jitter."""

    index: int
    family: Family
    fractions: np.ndarray  # (k,) mass fractions, sum 1
    path: float
    scatter: dict[str, float]
    instruments: tuple[int, ...]
    jitter: tuple[Jitter, ...]


class Simulator:
    """Deterministic multi-instrument spectra from a `SimulatorConfig` (random access by index).

    Example:
      sim = Simulator(SimulatorConfig(seed=0))
      records = sim.generate(range(32))      # 32 samples, each on 2 instruments
      views = sim.to_spectra(records)        # {instrument name: Spectra}
    """

    def __init__(self, config: SimulatorConfig = SimulatorConfig()):
        self.config = config
        self.instruments: list[Instrument] = []
        for m, modality in enumerate(MODALITIES):
            for k in range(config.instruments_per_modality[m]):
                template = k % len(TEMPLATES[modality])
                self.instruments.append(
                    make_instrument(config.seed, len(self.instruments), modality, template)
                )
        self.by_modality = {
            modality: [i.instrument_id for i in self.instruments if i.modality == modality]
            for modality in MODALITIES
        }
        self._library: dict[str, np.ndarray] = {}  # modality -> (num_components, N)
        self._computed: dict[str, np.ndarray] = {}  # modality -> (num_components,) bool
        self._thermal: dict[str, np.ndarray] = {}  # modality -> (num_components, N): dε_c/dT
        self._families: dict[int, Family] = {}

    # ----------------------------------------------------------------------------------------
    # Components and Beer–Lambert.

    def component_spectra(self, modality: str, component_ids: Sequence[int]) -> np.ndarray:
        """Pure-component spectra ε_c on the modality's fine grid.

        Args:
          modality: 'NIR', 'IR' or 'Raman'.
          component_ids: (k,) library indices.

        Returns:
          (k, N) float32, each with maximum 1 (computed once per component, then cached).
        """
        ids = np.asarray(component_ids, dtype=np.int64)
        return self._fill(modality, ids)[ids]

    def _fill(self, modality: str, ids: np.ndarray) -> np.ndarray:
        """Computes the missing library rows among `ids`; returns the modality's library."""
        if modality not in self._library:
            n = FINE_GRIDS[modality].size
            self._library[modality] = np.zeros((self.config.num_components, n), np.float32)
            self._computed[modality] = np.zeros(self.config.num_components, bool)
        library, done = self._library[modality], self._computed[modality]
        grid = FINE_GRIDS[modality].wavenumber
        for c in np.unique(ids[~done[ids]]):
            component = bands.make_component(self.config.seed, int(c))
            library[c] = bands.component_spectrum(component, modality, grid)
            done[c] = True
        return library

    def thermal_library(self, modality: str) -> np.ndarray:
        """(num_components, N) dε_c/dT = −β_c ∂ε_c/∂x + γ_c ε_c per kelvin (module constants),
        computed for the whole library on first use."""
        if modality not in self._thermal:
            library = self._fill(modality, np.arange(self.config.num_components))
            step = FINE_GRIDS[modality].step
            thermal = np.empty_like(library)
            for c in range(library.shape[0]):
                rng = np.random.default_rng([self.config.seed, THERMAL_STREAM, c])
                beta, gamma = rng.standard_normal(2) * (THERMAL_SHIFT[modality], THERMAL_INTENSITY)
                thermal[c] = -beta * np.gradient(library[c], step) + gamma * library[c]
            self._thermal[modality] = thermal
        return self._thermal[modality]

    def build_library(self) -> None:
        """Computes every component in every modality now (~1 s per modality) rather than on
        first use, so that later batches run at full speed."""
        for modality in MODALITIES:
            self._fill(modality, np.arange(self.config.num_components))

    def absorbance(
        self,
        modality: str,
        component_ids: np.ndarray,
        concentrations: np.ndarray,
        path: np.ndarray,
        thermal: bool = False,
    ) -> np.ndarray:
        """Beer–Lambert: A = path · Σ_c conc_c ε_c on the fine grid (linear in conc × path).

        Args:
          modality: modality of all rows.
          component_ids: (n, k) component ids (-1 = unused slot).
          concentrations: (n, k) concentrations (0 in unused slots).
          path: (n,) path lengths.
          thermal: its temperature derivative dA/dT instead (`thermal_library`).

        Returns:
          (n, N) float32 absorbance (Raman: intensity) before scatter.
        """
        ids = np.asarray(component_ids)
        weights = (np.asarray(concentrations) * np.asarray(path)[:, None]).astype(np.float32)
        if thermal:
            library = self.thermal_library(modality)
        else:
            library = self._fill(modality, ids[ids >= 0])
        out = np.zeros((ids.shape[0], library.shape[1]), np.float32)
        for slot in range(ids.shape[1]):  # ≤ 8 gathers of (n, N) instead of a dense matmul
            used = ids[:, slot] >= 0
            if used.all():
                out += weights[:, slot, None] * library[ids[:, slot]]
            elif used.any():
                out[used] += weights[used, slot, None] * library[ids[used, slot]]
        return out

    def scatter(self, modality: str, params: Sequence[dict[str, float]]) -> tuple[np.ndarray, ...]:
        """Multiplicative factors (n, 1) and additive terms (n, N) of n samples' scatter."""
        grid = FINE_GRIDS[modality]
        b = np.array([p["multiplicative"] for p in params], dtype=np.float32)[:, None]
        if modality == "Raman":
            x = grid.axis.astype(np.float32)
            amp, center, width = (
                np.array([p[k] for p in params], dtype=np.float32)[:, None]
                for k in ("amplitude", "center", "width")
            )
            return b, amp * np.exp(-0.5 * ((x - center) / width) ** 2)
        log_lam = np.log(1e4 / grid.wavenumber / LAMBDA_REF_UM[modality]).astype(np.float32)
        a0, a1, power = (
            np.array([p[k] for p in params], dtype=np.float32)[:, None]
            for k in ("offset", "amplitude", "power")
        )
        return b, a0 + a1 * (np.exp(power * log_lam) - 1)

    # ----------------------------------------------------------------------------------------
    # Families and samples.

    def family(self, family_id: int) -> Family:
        """Product family `family_id` (cached)."""
        if family_id not in self._families:
            cfg = self.config
            rng = np.random.default_rng([cfg.seed, FAMILY_STREAM, family_id])
            weights = np.asarray(cfg.modality_weights, dtype=float)
            modality = MODALITIES[int(rng.choice(3, p=weights / weights.sum()))]
            k = int(rng.integers(2, cfg.max_components + 1))
            ids = np.sort(rng.choice(cfg.num_components, size=k, replace=False))
            kinds = KINDS[modality]
            kind = kinds[int(rng.choice(len(kinds), p=[k[0] for k in kinds]))]
            if modality == "Raman":
                f = FLUORESCENCE
                scatter = {
                    "amplitude": float(np.exp(rng.uniform(*np.log(f["amplitude"])))),
                    "center": float(rng.uniform(*f["center"])),
                    "width": float(rng.uniform(*f["width"])),
                    "multiplicative_sd": float(rng.uniform(0.02, 0.2)),
                }
            else:
                s = SCATTER[modality]
                scatter = {
                    "offset": float(rng.uniform(*kind[2])),
                    "amplitude": float(rng.uniform(*s["amplitude"])),
                    "power": float(rng.uniform(*s["power"])),
                    "multiplicative_sd": float(rng.uniform(*s["multiplicative_sd"])),
                    "offset_sd": float(rng.uniform(*s["offset_sd"])),
                }
            self._families[family_id] = Family(
                family_id=family_id,
                modality=modality,
                component_ids=ids,
                base=rng.dirichlet(np.ones(k)),
                precision=float(np.exp(rng.uniform(np.log(3.0), np.log(300.0)))),
                path=float(np.exp(rng.uniform(*np.log(kind[1])))),
                scatter=scatter,
            )
        return self._families[family_id]

    def sample(self, index: int) -> Sample:
        """The draws of sample `index` (everything but the spectra)."""
        rng = np.random.default_rng([self.config.seed, SAMPLE_STREAM, index])
        family = self.family(int(rng.integers(self.config.num_families)))
        return self._draw_sample(rng, index, family)

    def family_sample(self, family_id: int, index: int, instruments: Sequence[int]) -> Sample:
        """Sample `index` of family `family_id`, measured on exactly `instruments` (a designed
        experiment: every sample of the family on the same instruments, as in a transfer
        study). Its own stream, so it is independent of the corpus's samples."""
        family = self.family(family_id)
        wrong = [i for i in instruments if self.instruments[i].modality != family.modality]
        if wrong or len(set(instruments)) != len(instruments):
            raise ValueError(
                f"family {family_id} is {family.modality}; instruments {list(instruments)} must "
                f"be distinct {family.modality} instruments (ids {self.by_modality[family.modality]})"
            )
        rng = np.random.default_rng([self.config.seed, FAMILY_SAMPLE_STREAM, family_id, index])
        return self._draw_sample(rng, index, family, tuple(instruments))

    def _draw_sample(
        self,
        rng: np.random.Generator,
        index: int,
        fam: Family,
        instruments: tuple[int, ...] | None = None,
    ) -> Sample:
        """Composition, path, scatter and measurement jitter of one sample of `fam`, on
        `instruments` (None: `views_per_sample` distinct ones of its modality, drawn)."""
        # A floor on the Dirichlet parameters keeps the gamma draws away from underflow.
        fractions = rng.dirichlet(np.maximum(fam.precision * fam.base, 0.05))
        path = fam.path * float(np.exp(rng.uniform(-0.2, 0.2)))
        fs = fam.scatter
        multiplicative = float(np.exp(rng.normal(0.0, fs["multiplicative_sd"])))
        if fam.modality == "Raman":
            scatter = {
                "multiplicative": multiplicative,
                "amplitude": fs["amplitude"] * float(np.exp(rng.normal(0.0, 0.3))),
                "center": fs["center"] + float(rng.normal(0.0, 100.0)),
                "width": fs["width"],
            }
        else:
            scatter = {
                "multiplicative": multiplicative,
                "offset": fs["offset"] + float(rng.normal(0.0, fs["offset_sd"] + 1e-12)),
                "amplitude": fs["amplitude"] * float(np.exp(rng.normal(0.0, 0.2))),
                "power": fs["power"] + float(rng.normal(0.0, 0.1)),
            }
        if instruments is None:
            ids = self.by_modality[fam.modality]
            views = self.config.views_per_sample
            instruments = tuple(ids[j] for j in rng.permutation(len(ids))[:views])
        jitter = tuple(draw_jitter(self.instruments[i], rng) for i in instruments)
        return Sample(index, fam, fractions, path, scatter, instruments, jitter)

    def true_spectra(self, samples: Sequence[Sample], thermal: bool = False) -> np.ndarray:
        """(n, N) float32 true spectra (Beer–Lambert + scatter) of samples of one modality, or
        with `thermal` their change per kelvin of sample temperature."""
        modality = samples[0].family.modality
        k = self.config.max_components
        ids = np.full((len(samples), k), -1)
        conc = np.zeros((len(samples), k), dtype=np.float32)
        for r, s in enumerate(samples):
            ids[r, : s.fractions.size] = s.family.component_ids
            conc[r, : s.fractions.size] = s.fractions
        path = np.array([s.path for s in samples], dtype=np.float32)
        b, additive = self.scatter(modality, [s.scatter for s in samples])
        if thermal:
            return b * self.absorbance(modality, ids, conc, path, thermal=True)
        spectra = b * self.absorbance(modality, ids, conc, path) + additive
        # Reflectance can fall slightly below the white reference, never far (A ≥ -1).
        return spectra if modality == "Raman" else np.maximum(spectra, -1.0)

    def generate(
        self, indices: Sequence[int], effects: tuple[str, ...] | frozenset[str] = EFFECTS
    ) -> list[dict[str, np.ndarray]]:
        """Generates samples as flat records (the format every corpus source yields).

        Args:
          indices: sample indices (any order, repeats allowed).
          effects: instrument effects to apply (a subset of `EFFECTS`).

        Returns:
          One record per index, with V = views_per_sample, P_v the points of view v and
          C = max_components:
            sample_id: () int64; family: () int32; modality: () int32 (index in MODALITIES);
            instrument: (V,) int32; lengths: (V,) int32 (P_v);
            values: (ΣP_v,) float32, the V spectra one after the other (absorbance for NIR/IR,
              intensity for Raman), each on its instrument's axis in ascending native units;
            wavenumber: (ΣP_v,) float32 axis of each point in cm⁻¹ (Raman shift for Raman);
            concentrations: (C,) float32 mass fractions (0 in unused slots);
            component_ids: (C,) int32 (-1 in unused slots); path_length: () float32.
        """
        return self.measure([self.sample(int(i)) for i in indices], effects)

    def measure(
        self, samples: Sequence[Sample], effects: tuple[str, ...] | frozenset[str] = EFFECTS
    ) -> list[dict[str, np.ndarray]]:
        """`generate` for samples already drawn (e.g. `family_sample`): one record each."""
        views: list[list[np.ndarray | None]] = [[None] * len(s.instruments) for s in samples]
        for modality in MODALITIES:
            rows = [r for r, s in enumerate(samples) if s.family.modality == modality]
            if not rows:
                continue
            fine = self.true_spectra([samples[r] for r in rows])
            thermal = None
            if "temperature" in effects and modality != "Raman":
                thermal = self.true_spectra([samples[r] for r in rows], thermal=True)
            # Group the measurements by instrument so each instrument runs once, vectorised.
            jobs: dict[int, list[tuple[int, int]]] = {}
            for j, r in enumerate(rows):
                for v, inst in enumerate(samples[r].instruments):
                    jobs.setdefault(inst, []).append((j, v))
            for inst, members in jobs.items():
                jit = [samples[rows[j]].jitter[v] for j, v in members]
                stacked = Jitter(*(np.concatenate([getattr(x, f) for x in jit]) for f in _JIT))
                index = [j for j, _ in members]
                true = fine[index]
                if thermal is not None:  # this measurement's sample temperature, in K
                    kelvin = stacked.temperature * self.instruments[inst].temperature
                    true = true + kelvin[:, None].astype(np.float32) * thermal[index]
                out = measure(self.instruments[inst], true, stacked, effects)
                for (j, v), spectrum in zip(members, out, strict=True):
                    views[rows[j]][v] = spectrum
        return [self._record(s, v) for s, v in zip(samples, views, strict=True)]

    def _record(self, sample: Sample, views: list[np.ndarray]) -> dict[str, np.ndarray]:
        k, c = sample.fractions.size, self.config.max_components
        conc = np.zeros(c, dtype=np.float32)
        conc[:k] = sample.fractions
        ids = np.full(c, -1, dtype=np.int32)
        ids[:k] = sample.family.component_ids
        insts = [self.instruments[i] for i in sample.instruments]
        return {
            "sample_id": np.int64(sample.index),
            "family": np.int32(sample.family.family_id),
            "modality": np.int32(MODALITIES.index(sample.family.modality)),
            "instrument": np.array(sample.instruments, dtype=np.int32),
            "lengths": np.array([v.size for v in views], dtype=np.int32),
            "values": np.concatenate(views),
            "wavenumber": np.concatenate([i.wavenumber for i in insts]),
            "concentrations": conc,
            "component_ids": ids,
            "path_length": np.float32(sample.path),
        }

    def to_spectra(self, records: Sequence[dict[str, np.ndarray]]) -> dict[str, Spectra]:
        """Groups records' views by instrument into `Spectra` (labels: concentrations, path).

        Args:
          records: records from `generate`.

        Returns:
          {instrument name: Spectra}, with sample ids "<index>", label columns
          component_0 … component_{C-1} (mass fractions of the family's slots) and path_length.
        """
        c = self.config.max_components
        names = tuple(f"component_{j}" for j in range(c)) + ("path_length",)
        rows: dict[int, list[tuple[np.ndarray, str, np.ndarray]]] = {}
        for rec in records:
            labels = np.append(rec["concentrations"], rec["path_length"]).astype(np.float64)
            for inst, part in zip(rec["instrument"], split_views(rec)[0], strict=True):
                rows.setdefault(int(inst), []).append((part, str(rec["sample_id"]), labels))
        out = {}
        for inst_id, items in sorted(rows.items()):
            inst = self.instruments[inst_id]
            out[inst.name] = Spectra.from_axis(
                np.stack([v for v, _, _ in items]),
                inst.axis,
                inst.unit,
                modality=inst.modality,
                instrument=inst.name,
                sample_id=[s for _, s, _ in items],
                labels=np.stack([lab for _, _, lab in items]),
                label_names=names,
                label_units=("mass fraction",) * c + ("a.u.",),
                origin=f"simulator seed {self.config.seed} ({inst.template})",
            )
        return out


_JIT = tuple(f.name for f in dataclasses.fields(Jitter))


def split_views(record: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A record's views: ([values (P_v,)], [wavenumber (P_v,)]) per view."""
    ends = np.cumsum(record["lengths"])[:-1]
    return np.split(record["values"], ends), np.split(record["wavenumber"], ends)
