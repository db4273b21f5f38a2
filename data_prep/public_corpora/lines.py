r"""Computed line lists (mode frequencies and intensities) turned into spectra.

Quantum-chemistry programs report each vibrational mode as a frequency ν_i (cm⁻¹) with an IR
intensity (km/mol) or a Raman activity S_i (Å⁴/amu). Both are integrated band strengths, so every
mode becomes an **area-normalised Lorentzian** of half width at half maximum γ:

    spectrum(x) = Σ_i I_i · (γ/π) / ((x − ν_i)² + γ²)

whose integral over all x is I_i, whatever γ. The spectrum is evaluated on a fixed physical grid
(`grid`: lo, lo + step, …, up to hi, in cm⁻¹), the same for every molecule, so point k means the
same wavenumber in every spectrum. Modes outside the grid still contribute their tails inside it;
modes with ν ≤ 0 (imaginary frequencies of a saddle point) are dropped.

Raman activities can be turned into relative scattering intensities (`raman_cross_section`):

    I_i = S_i · ((ν₀ − ν_i)/ν₀)⁴ / ν_i / (1 − exp(−c₂ ν_i / T))

with ν₀ the laser wavenumber (1e7 / λ nm), c₂ = hc/k = 1.438777 cm·K and T the temperature: the
ν⁴ scattering law (Stokes side), the 1/ν of the vibrational amplitude and the Bose–Einstein
population factor. The overall constant is dropped (intensities are relative); modes at or
beyond the laser wavenumber scatter nothing.
"""

from __future__ import annotations

import numpy as np

from caltransfer_jax.data.spectra import SpectraError

# Second radiation constant hc/k in cm·K (CODATA 2018, exact).
C2 = 1.438776877
RAMAN_INTENSITIES = ("activity", "cross_section")


def grid(lo: float, hi: float, step: float) -> np.ndarray:
    """lo, lo + step, … ≤ hi (cm⁻¹), computed as lo + k·step so every build gets the same points."""
    if not (0 <= lo < hi and step > 0):
        raise ValueError(f"need 0 <= lo < hi and step > 0, got lo={lo}, hi={hi}, step={step}")
    n = int(np.floor((hi - lo) / step + 1e-9)) + 1
    return lo + step * np.arange(n, dtype=np.float64)


def check_lines(origin: str, frequencies, intensities) -> tuple[np.ndarray, np.ndarray]:
    """Validated line list: equal lengths, finite, intensities ≥ 0; modes with ν ≤ 0 dropped.

    Raises:
      SpectraError: naming `origin` and the problem.
    """
    freq = np.asarray(frequencies, dtype=np.float64).ravel()
    inten = np.asarray(intensities, dtype=np.float64).ravel()
    if freq.size != inten.size:
        raise SpectraError(f"{origin}: {freq.size} frequencies but {inten.size} intensities")
    if freq.size == 0:
        raise SpectraError(f"{origin}: empty line list")
    bad = ~(np.isfinite(freq) & np.isfinite(inten))
    if bad.any():
        raise SpectraError(f"{origin}: non-finite frequency or intensity in mode {bad.argmax()}")
    if np.any(inten < 0):
        raise SpectraError(
            f"{origin}: negative intensity {inten.min():g} in mode {int(inten.argmin())}"
        )
    keep = freq > 0
    if not keep.any():
        raise SpectraError(f"{origin}: no mode with a positive frequency")
    return freq[keep], inten[keep]


def lorentzian_spectrum(
    frequencies: np.ndarray, intensities: np.ndarray, axis: np.ndarray, hwhm: float
) -> np.ndarray:
    """Σ_i I_i · (γ/π) / ((x − ν_i)² + γ²) on `axis` (all in cm⁻¹; γ = `hwhm` > 0)."""
    if hwhm <= 0:
        raise ValueError(f"hwhm must be positive, got {hwhm}")
    offsets = axis[None, :] - np.asarray(frequencies, np.float64)[:, None]
    shapes = (hwhm / np.pi) / (offsets**2 + hwhm**2)
    return np.asarray(intensities, np.float64) @ shapes


def raman_cross_section(
    frequencies: np.ndarray, activities: np.ndarray, laser_nm: float, temperature: float
) -> np.ndarray:
    """Relative Raman intensities from activities (formula in the module docstring).

    Args:
      frequencies: (n,) mode wavenumbers in cm⁻¹, all > 0.
      activities: (n,) Raman activities S_i.
      laser_nm: excitation wavelength in nm.
      temperature: sample temperature in K (> 0).
    """
    if laser_nm <= 0 or temperature <= 0:
        raise ValueError(f"laser_nm and temperature must be positive ({laser_nm}, {temperature})")
    nu = np.asarray(frequencies, np.float64)
    laser = 1e7 / laser_nm
    stokes = np.clip((laser - nu) / laser, 0.0, None)
    bose = -np.expm1(-C2 * nu / temperature)
    return np.asarray(activities, np.float64) * stokes**4 / nu / bose
