"""Simulated spectrometers: persistent instrument parameters and the measurement chain.

A sample's true spectrum lives on its modality's fine grid (`FINE_GRIDS`). An instrument reads it
through its own optics and electronics, in this order (absorbance modalities, NIR and IR):

1. resample onto the instrument's internal grid, uniform in its native unit (nm for grating and
   array instruments, cm⁻¹ for FT instruments), so the line shape has a constant width there;
2. transmittance relative to the instrument's reference level, T = 10^-(A - A_ref) (A_ref: the
   attenuated reference of high-absorbance transmission instruments; 0 for thin samples);
3. resolution: T convolved with a Gaussian instrument line shape (ILS) of the instrument's FWHM;
4. stray light T' = (T + s) / (1 + s); detector non-linearity T' = T (1 - βT) / (1 - β);
5. the axis error: the value reported at nominal position x was measured at x - d(x), with
   d = shift + stretch·u + warp·u² (u ∈ [-1, 1] across the range), so a band appears displaced by
   d; per-measurement jitter adds a small extra shift;
6. noise in the detector signal, σ_T = sqrt((σ_c / I0(u))² + (σ_r T)²), with I0 the throughput,
   which falls towards the ends of the range (the noisy edges of real NIR spectra);
7. A = -log10(T) + A_ref, then the effective path length, A · (1 + r(u) + e(u)): r a smooth
   function of the position (Legendre degrees 1–6) fixed per instrument — sampling optics and
   penetration depth that differ with wavelength — and e a smaller one drawn per measurement —
   how the sample was presented that time. Both scale with the absorbance, so they act on the
   strong bands: the small, chemistry-dependent differences that a linear map of the spectrum
   predicts (r) or that no map can (e), which is what separates real instruments after mean
   re-centring (docs/DIAGNOSIS.md);
8. photometric gain and a baseline offset + slope·u + curvature·u².

Before all this (the `temperature` effect, NIR/IR, applied by the corpus to the true spectrum,
whose composition it knows): the sample's temperature differs from one measurement to the next
(SD fixed per instrument: its temperature control), and each component's bands move and change
in strength with temperature by amounts drawn per component — so the change depends on the
sample's chemistry, differs per measurement, and sits in the strong bands (the water band of
real NIR spectra is the classic case).

Raman instruments work on intensities: the same resampling, ILS and axis error, a Rayleigh-tail
stray-light term at low shift, detector saturation, a wavelength-dependent response (gain),
shot + read noise, and a dark/background baseline.

Every effect can be switched off by name (`EFFECTS`); with none on, an instrument reports the true
spectrum at its nominal axis.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter1d

from caltransfer_jax.data.spectra import to_wavenumber

INSTRUMENT_STREAM = 1  # seed-sequence tag of instrument draws: (seed, tag, instrument_id)
EFFECTS = (
    "axis",
    "resolution",
    "stray_light",
    "nonlinearity",
    "gain",
    "baseline",
    "noise",
    "jitter",
    "path_response",
    "presentation",
    "temperature",  # applied to the true spectra by the corpus (`corpus.Simulator`)
)
PATH_DEGREE = 6  # Legendre degrees 1…6 of the path-length response and its per-measurement part
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_T_MIN = 1e-6  # detector floor: 6 AU of dynamic range below the reference level


@dataclasses.dataclass(frozen=True)
class Grid:
    """A uniform grid `start + step * arange(size)` in `unit` ('nm' or 'cm-1')."""

    unit: str
    start: float
    step: float
    size: int

    @property
    def axis(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.size)

    @property
    def wavenumber(self) -> np.ndarray:
        """(size,) positions in cm⁻¹ (Raman shift for Raman grids)."""
        return to_wavenumber(self.axis, self.unit)

    def position(self, x: np.ndarray, unit: str) -> np.ndarray:
        """Fractional indices of positions `x` given in `unit` (nm ↔ cm⁻¹ converted exactly)."""
        if unit != self.unit:
            x = 1e7 / np.asarray(x, dtype=np.float64)
        return (x - self.start) / self.step


# The true spectrum of a sample is computed once per modality on these grids.
FINE_GRIDS = {
    "NIR": Grid("nm", 300.0, 0.5, 4901),  # 300–2750 nm (room for vis-NIR margins)
    "IR": Grid("cm-1", 350.0, 0.5, 7701),  # 350–4200 cm⁻¹
    "Raman": Grid("cm-1", 0.0, 0.5, 7401),  # 0–3700 cm⁻¹ Raman shift
}


@dataclasses.dataclass(frozen=True)
class Template:
    """An instrument type: native unit, nominal range and point count, ILS and axis accuracy."""

    name: str
    unit: str
    start: float
    stop: float
    points: int
    fwhm: tuple[float, float]  # ILS FWHM range, native unit
    axis_error: float  # largest shift / end displacement, native unit


TEMPLATES = {
    "NIR": (
        Template("grating 1100-2498 nm", "nm", 1100, 2498, 700, (8, 12), 1.0),
        Template("grating 600-1898 nm", "nm", 600, 1898, 650, (8, 12), 1.0),
        Template("vis-NIR 400-2498 nm", "nm", 400, 2498, 1050, (6, 12), 1.0),
        Template("InGaAs array 900-1700 nm", "nm", 900, 1700, 256, (6, 12), 1.5),
        Template("MEMS 950-1650 nm", "nm", 950, 1650, 125, (12, 16), 2.0),
        Template("ext. InGaAs 1000-2500 nm", "nm", 1000, 2500, 256, (10, 20), 2.0),
        Template("FT-NIR 4000-10000 cm-1", "cm-1", 4000, 10000, 1556, (8, 16), 0.3),
        Template("Si CCD 600-1100 nm", "nm", 600, 1100, 512, (3, 10), 0.5),
    ),
    "IR": (
        Template("FTIR 400-4000 cm-1", "cm-1", 400, 4000, 1868, (4, 5), 0.3),
        Template("ATR-FTIR 650-4000 cm-1", "cm-1", 650, 4000, 869, (8, 9), 0.5),
        Template("FTIR 600-4000 cm-1", "cm-1", 600, 4000, 1764, (2, 4), 0.2),
    ),
    "Raman": (
        Template("785 nm dispersive 200-2000 cm-1", "cm-1", 200, 2000, 1024, (4, 8), 3.0),
        Template("532 nm dispersive 100-3400 cm-1", "cm-1", 100, 3400, 1340, (6, 10), 3.0),
        Template("1064 nm FT-Raman 100-3500 cm-1", "cm-1", 100, 3500, 1763, (4, 8), 1.0),
    ),
}

# Parameter ranges per modality: (low, high), "log" ranges are log-uniform. Absorbance units for
# NIR/IR photometric terms; for Raman, units of a unit-height line. Checked against real
# instrument pairs in docs/SIMULATOR.md.
RANGES = {
    "NIR": {
        "offset": (-0.1, 0.1),
        "slope": (-0.03, 0.03),
        "curvature": (-0.03, 0.03),
        "gain": (0.95, 1.05),
        "stray_light": ("log", 1e-6, 1e-3),
        "nonlinearity": (0.0, 0.05),
        "noise_counts": ("log", 1e-5, 5e-4),
        "noise_relative": ("log", 2e-6, 1e-4),
        "edge_loss": (0.0, 0.98),
        "headroom": (0.2, 2.0),
        "jitter_shift": ("log", 0.005, 0.1),  # × axis_error
        "jitter_offset": ("log", 1e-4, 1e-2),
        "jitter_gain": ("log", 1e-4, 5e-3),
        "path_response": ("log", 1e-3, 3e-2),  # RMS of r(u) over the range
        "presentation": ("log", 5e-4, 1e-2),  # RMS of e(u) per measurement
        "temperature": ("log", 0.2, 3.0),  # SD of the sample temperature per measurement, K
    },
    "IR": {
        "offset": (-0.02, 0.02),
        "slope": (-0.02, 0.02),
        "curvature": (-0.01, 0.01),
        "gain": (0.97, 1.03),
        "stray_light": ("log", 1e-5, 3e-3),
        "nonlinearity": (0.0, 0.05),
        "noise_counts": ("log", 1e-5, 5e-4),
        "noise_relative": ("log", 2e-6, 1e-4),
        "edge_loss": (0.0, 0.9),
        "headroom": (0.0, 0.0),
        "jitter_shift": ("log", 0.005, 0.1),
        "jitter_offset": ("log", 1e-4, 3e-3),
        "jitter_gain": ("log", 1e-4, 5e-3),
        "path_response": ("log", 1e-3, 3e-2),
        "presentation": ("log", 5e-4, 1e-2),
        "temperature": ("log", 0.2, 3.0),
    },
    "Raman": {
        "offset": (0.0, 0.05),
        "slope": (-0.02, 0.02),
        "curvature": (-0.02, 0.02),
        "gain": (0.5, 2.0),
        "stray_light": ("log", 1e-3, 1.0),  # Rayleigh-tail amplitude at 0 cm⁻¹
        "nonlinearity": (0.0, 0.05),
        "noise_counts": ("log", 1e-4, 1e-2),  # read noise
        "noise_relative": ("log", 1e-5, 1e-3),  # 1 / photons per unit intensity (shot noise)
        "edge_loss": (0.0, 0.9),
        "headroom": (0.0, 0.0),
        "jitter_shift": ("log", 0.005, 0.1),
        "jitter_offset": ("log", 1e-4, 3e-3),
        "jitter_gain": ("log", 1e-3, 2e-2),
        "path_response": (0.0, 0.0),  # Raman intensities: the response curve plays this part
        "presentation": (0.0, 0.0),
        "temperature": (0.0, 0.0),  # not modelled for Raman
    },
}
_RAYLEIGH_DECAY = (50.0, 200.0)  # cm⁻¹, decay length of the Rayleigh tail
_RESPONSE = 0.3  # Raman response curve 1 + r1 u + r2 u², |r| ≤ this


@dataclasses.dataclass(frozen=True, eq=False)
class Instrument:
    """A simulated spectrometer with persistent parameters.

    Attributes:
      instrument_id: global id; name: readable name; modality: 'NIR', 'IR' or 'Raman'.
      unit: native axis unit; axis: (p,) nominal axis, ascending in `unit`.
      fwhm: ILS full width at half maximum (native unit).
      shift, stretch, warp: axis error d(u) = shift + stretch·u + warp·u² (native unit).
      offset, slope, curvature: baseline over u ∈ [-1, 1] (output units).
      gain: photometric gain (absorbance) or throughput (Raman).
      stray_light: s of T' = (T + s)/(1 + s); Raman: Rayleigh-tail amplitude.
      rayleigh_decay: Raman only, decay length of the Rayleigh tail (cm⁻¹).
      nonlinearity: β of the detector response.
      noise_counts: σ_c, signal noise relative to the reference (Raman: read noise).
      noise_relative: σ_r, noise proportional to the signal (Raman: 1/photons, shot noise).
      edge_loss: (low, high) throughput loss at the range ends, I0 = 1 - e·|u|⁴ per side; the
        signal-independent noise is σ_c / I0.
      headroom: absorbance of the reference level below the sample's minimum (NIR/IR).
      response: Raman only, (r1, r2) of the response curve 1 + r1 u + r2 u².
      jitter: per-measurement standard deviations (shift, offset, gain).
      template: the instrument type's name.
      path_response: (PATH_DEGREE,) Legendre coefficients (degrees 1…) of r(u), NIR/IR.
      presentation: RMS of the per-measurement path-length function e(u), NIR/IR.
      temperature: SD of the sample temperature from one measurement to the next (K), NIR/IR.
    """

    instrument_id: int
    name: str
    modality: str
    unit: str
    axis: np.ndarray
    fwhm: float
    shift: float
    stretch: float
    warp: float
    offset: float
    slope: float
    curvature: float
    gain: float
    stray_light: float
    rayleigh_decay: float
    nonlinearity: float
    noise_counts: float
    noise_relative: float
    edge_loss: tuple[float, float]
    headroom: float
    response: tuple[float, float]
    jitter: tuple[float, float, float]
    template: str
    path_response: tuple[float, ...] = (0.0,) * PATH_DEGREE
    presentation: float = 0.0
    temperature: float = 0.0
    internal: Grid = dataclasses.field(init=False, repr=False)  # ILS grid, uniform in `unit`
    fine_index: np.ndarray = dataclasses.field(init=False, repr=False)  # internal on fine grid
    u: np.ndarray = dataclasses.field(init=False, repr=False)  # (p,) -1 … +1 across the range
    throughput: np.ndarray = dataclasses.field(init=False, repr=False)  # (p,) I0(u)
    wavenumber: np.ndarray = dataclasses.field(init=False, repr=False)  # (p,) float32, cm⁻¹
    legendre: np.ndarray = dataclasses.field(init=False, repr=False)  # (PATH_DEGREE, p) float32

    def __post_init__(self):
        axis = np.asarray(self.axis, dtype=np.float64)
        axis.setflags(write=False)
        object.__setattr__(self, "axis", axis)
        fine = FINE_GRIDS[self.modality]
        step = (axis[-1] - axis[0]) / (axis.size - 1)
        h = min(step / 2, self.fwhm / 4)
        # Room for the axis error, jitter and the ILS tails on both sides.
        margin = 4 * self.fwhm + 3 * (abs(self.shift) + abs(self.stretch) + abs(self.warp)) + 2
        lo, hi = axis[0] - margin, axis[-1] + margin
        internal = Grid(self.unit, lo, h, int(np.ceil((hi - lo) / h)) + 1)
        pos = fine.position(internal.axis, self.unit)
        if pos.min() < 0 or pos.max() > fine.size - 1:
            raise ValueError(
                f"{self.name}: range {axis[0]:g}-{axis[-1]:g} {self.unit} (with margins) lies "
                f"outside the {self.modality} simulation grid"
            )
        u = 2 * (axis - axis[0]) / (axis[-1] - axis[0]) - 1
        lo_loss, hi_loss = self.edge_loss
        # Throughput: 1 in the middle, falling towards the ends (detector cut-off, lamp).
        i0 = 1 - lo_loss * np.clip(-u, 0, None) ** 4 - hi_loss * np.clip(u, 0, None) ** 4
        for name, value in (
            ("internal", internal),
            ("fine_index", pos),
            ("u", u),
            ("throughput", np.maximum(i0, 0.02)),
            ("wavenumber", to_wavenumber(axis, self.unit).astype(np.float32)),
            ("legendre", _legendre(u)),
        ):
            object.__setattr__(self, name, value)


def _legendre(u: np.ndarray) -> np.ndarray:
    """(PATH_DEGREE, p) Legendre polynomials of degrees 1… at u, scaled to unit RMS over u."""
    basis = np.polynomial.legendre.legvander(u, PATH_DEGREE)[:, 1:].T
    return (basis / np.sqrt(np.mean(basis**2, axis=1, keepdims=True))).astype(np.float32)


def _combine(coefficients: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """coefficients (..., k) · basis (k, p), summed term by term: a matrix product's summation
    order depends on how many rows it gets, and a sample must come out bit for bit the same
    whichever batch it is measured in."""
    out = np.zeros(coefficients.shape[:-1] + basis.shape[1:], np.float32)
    for j in range(basis.shape[0]):
        out = out + coefficients[..., j, None] * basis[j]
    return out


def _smooth_function(rng: np.random.Generator, rms: float) -> tuple[float, ...]:
    """Legendre coefficients of a random smooth function of RMS ≈ `rms`, weight falling with
    degree (slow variations dominate, as in real path-length responses)."""
    weights = 1.0 / np.arange(1, PATH_DEGREE + 1)
    coefficients = rng.standard_normal(PATH_DEGREE) * weights
    return tuple(float(c) for c in coefficients * rms / np.sqrt(np.sum(weights**2)))


def _draw(rng: np.random.Generator, spec) -> float:
    if spec[0] == "log":
        return float(np.exp(rng.uniform(np.log(spec[1]), np.log(spec[2]))))
    return float(rng.uniform(*spec))


def make_instrument(
    seed: int, instrument_id: int, modality: str, template_index: int
) -> Instrument:
    """Draws the persistent parameters of instrument `instrument_id` (independent of others).

    Args:
      seed: corpus seed.
      instrument_id: global instrument id.
      modality: 'NIR', 'IR' or 'Raman'.
      template_index: index into `TEMPLATES[modality]`.

    Returns:
      The instrument.
    """
    rng = np.random.default_rng([seed, INSTRUMENT_STREAM, instrument_id])
    t = TEMPLATES[modality][template_index]
    r = RANGES[modality]
    step = (t.stop - t.start) / (t.points - 1)
    start = t.start + rng.uniform(-2, 2) * step  # units differ in where their range begins
    e = t.axis_error
    return Instrument(
        instrument_id=instrument_id,
        name=f"sim-{modality}-{instrument_id:02d}",
        modality=modality,
        unit=t.unit,
        axis=start + step * np.arange(t.points),
        fwhm=float(rng.uniform(*t.fwhm)),
        shift=float(rng.uniform(-e, e)),
        stretch=float(rng.uniform(-e, e)),
        warp=float(rng.uniform(-e, e) / 2),
        offset=_draw(rng, r["offset"]),
        slope=_draw(rng, r["slope"]),
        curvature=_draw(rng, r["curvature"]),
        gain=_draw(rng, r["gain"]),
        stray_light=_draw(rng, r["stray_light"]),
        rayleigh_decay=float(rng.uniform(*_RAYLEIGH_DECAY)),
        nonlinearity=_draw(rng, r["nonlinearity"]),
        noise_counts=_draw(rng, r["noise_counts"]),
        noise_relative=_draw(rng, r["noise_relative"]),
        edge_loss=(_draw(rng, r["edge_loss"]), _draw(rng, r["edge_loss"])),
        headroom=_draw(rng, r["headroom"]),
        response=tuple(float(x) for x in rng.uniform(-_RESPONSE, _RESPONSE, 2)),
        jitter=(
            _draw(rng, r["jitter_shift"]) * e,
            _draw(rng, r["jitter_offset"]),
            _draw(rng, r["jitter_gain"]),
        ),
        template=t.name,
        # Drawn last, so the parameters above are those drawn before these effects existed.
        path_response=_smooth_function(rng, _draw(rng, r["path_response"])),
        presentation=_draw(rng, r["presentation"]),
        temperature=_draw(rng, r["temperature"]),
    )


@dataclasses.dataclass(frozen=True)
class Jitter:
    """Per-measurement deviations from an instrument's persistent parameters.

    Attributes:
      shift: (n,) extra axis shift (native unit).
      offset: (n,) extra baseline offset.
      gain: (n,) relative gain change.
      noise: (n, p) standard normal draws for the detector noise.
      presentation: (n, PATH_DEGREE) Legendre coefficients of the per-measurement path-length
        function e(u) for an instrument of `presentation` 1 (None: none).
      temperature: (n,) standard normal draws of the sample temperature (× the instrument's
        `temperature`, in K; None: none).
    """

    shift: np.ndarray
    offset: np.ndarray
    gain: np.ndarray
    noise: np.ndarray
    presentation: np.ndarray | None = None
    temperature: np.ndarray | None = None


def draw_jitter(instrument: Instrument, rng: np.random.Generator, n: int = 1) -> Jitter:
    """Draws n measurements' jitter and noise from `rng` (shapes (n,) and (n, p))."""
    shift, offset, gain = rng.standard_normal((3, n)) * np.array(instrument.jitter)[:, None]
    noise = rng.standard_normal((n, instrument.axis.size), dtype=np.float32)
    # From a child stream, so the draws above are those made before this effect existed.
    child = rng.spawn(1)[0]
    presentation = np.array([_smooth_function(child, 1.0) for _ in range(n)])
    temperature = rng.spawn(1)[0].standard_normal(n)  # a second child, for the same reason
    return Jitter(shift, offset, gain, noise, presentation, temperature)


def _lerp(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of rows x (n, m) at fractional indices pos ((p,) or (n, p))."""
    m = x.shape[-1]
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, m - 2)
    w = (pos - i0).astype(x.dtype)
    if pos.ndim == 1:
        return x[:, i0] * (1 - w) + x[:, i0 + 1] * w
    return np.take_along_axis(x, i0, -1) * (1 - w) + np.take_along_axis(x, i0 + 1, -1) * w


def measure(
    instrument: Instrument,
    fine: np.ndarray,
    jitter: Jitter,
    effects: tuple[str, ...] | frozenset[str] = EFFECTS,
) -> np.ndarray:
    """Measures n samples' true spectra with one instrument.

    Args:
      instrument: the instrument.
      fine: (n, N) true spectra on `FINE_GRIDS[instrument.modality]` (absorbance for NIR/IR,
        Raman intensity for Raman).
      jitter: the n measurements' jitter and noise.
      effects: instrument effects to apply (a subset of `EFFECTS`).

    Returns:
      (n, p) float32 spectra on the instrument's nominal axis.
    """
    unknown = set(effects) - set(EFFECTS)
    if unknown:
        raise ValueError(f"unknown instrument effects {sorted(unknown)}; expected {EFFECTS}")
    inst, on = instrument, frozenset(effects)
    x = _lerp(np.asarray(fine, dtype=np.float32), inst.fine_index)
    raman = inst.modality == "Raman"
    if raman:
        a_ref = 0.0
        signal = x
    else:
        # Reference level: transmission instruments attenuate the reference for dense samples.
        a_ref = np.maximum(x.min(axis=1, keepdims=True) - inst.headroom, 0.0)
        signal = np.exp(np.float32(np.log(10.0)) * (a_ref - x).astype(np.float32))
    if "resolution" in on:
        sigma = inst.fwhm * _FWHM_TO_SIGMA / inst.internal.step
        signal = gaussian_filter1d(signal, sigma, axis=-1, mode="nearest", truncate=4.0)
    if "stray_light" in on:
        if raman:
            shift = inst.internal.axis.astype(np.float32)
            signal = signal + inst.stray_light * np.exp(-shift / inst.rayleigh_decay)
        else:
            signal = (signal + inst.stray_light) / (1 + inst.stray_light)
    if "nonlinearity" in on:
        b = inst.nonlinearity
        if raman:  # saturation relative to the brightest point of the measurement
            signal = signal * (1 - b * signal / np.max(signal, axis=1, keepdims=True))
        else:
            signal = signal * (1 - b * signal) / (1 - b)

    u = inst.u
    d = np.zeros_like(u)
    if "axis" in on:
        d = inst.shift + inst.stretch * u + inst.warp * u**2
    if "jitter" in on:  # per-row positions (n, p)
        d = d[None, :] + jitter.shift[:, None]
    signal = _lerp(signal, inst.internal.position(inst.axis - d, inst.unit))

    gain = np.float32(inst.gain if "gain" in on else 1.0)
    if "jitter" in on:
        gain = gain * (1 + jitter.gain[:, None]).astype(np.float32)
    if raman and "gain" in on:
        r1, r2 = inst.response
        signal = signal * np.maximum(1 + r1 * u + r2 * u**2, 0.1).astype(np.float32)
    if "noise" in on:
        if raman:  # shot noise of the detected photons + read noise (worse at the edges)
            read = inst.noise_counts / inst.throughput
            var = np.abs(signal * gain) * inst.noise_relative + read**2
            signal = signal + jitter.noise * np.sqrt(var) / gain
        else:
            sigma_c = inst.noise_counts / inst.throughput
            var = sigma_c**2 + (inst.noise_relative * signal) ** 2
            signal = signal + jitter.noise * np.sqrt(var).astype(np.float32)
    if raman:
        out = signal * gain
    else:
        out = a_ref - np.log10(np.maximum(signal, _T_MIN))
        path = np.zeros_like(u, dtype=np.float32)
        if "path_response" in on:
            path = _combine(np.asarray(inst.path_response, np.float32), inst.legendre)
        if "presentation" in on and jitter.presentation is not None:
            coefficients = (jitter.presentation * inst.presentation).astype(np.float32)
            path = path + _combine(coefficients, inst.legendre)
        out = out * (1 + path) * gain
    if "baseline" in on:
        out = out + (inst.offset + inst.slope * u + inst.curvature * u**2).astype(np.float32)
    if "jitter" in on:
        out = out + jitter.offset[:, None].astype(np.float32)
    return out.astype(np.float32)
