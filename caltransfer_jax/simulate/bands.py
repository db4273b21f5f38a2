"""Pure components: sums of absorption bands (or Raman lines) at physically plausible positions.

A component is a small "molecule": one to three functional groups, each contributing its
fundamentals (mid-IR), overtones and combinations (NIR) and Raman lines at the textbook
positions, moved a little by the chemical environment, plus a few component-specific fingerprint
bands. Band shapes are pseudo-Voigt profiles (η = 0 Gaussian, η = 1 Lorentzian) evaluated in
wavenumber (energy), so NIR bands given in nm keep their true asymmetry on a wavelength axis.

Each component's spectrum is scaled to a maximum of 1 per modality: the scale of a measured
spectrum comes from concentration × path length (Beer–Lambert), not from the component.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from caltransfer_jax.data.spectra import MODALITIES

# Stream tag of component draws in the seed sequence (seed, tag, component_id).
COMPONENT_STREAM = 0

# A band: (centre, centre jitter ±, FWHM range, relative intensity). NIR in nm; IR in cm⁻¹
# (absolute wavenumber); Raman in cm⁻¹ (Raman shift). Positions and widths: Workman & Weyer,
# "Practical Guide to Interpretive Near-Infrared Spectroscopy"; Socrates, "Infrared and Raman
# Characteristic Group Frequencies". NIR overtones are broad (tens to ~100 nm), Raman lines narrow.
GROUPS: dict[str, dict[str, tuple[tuple[float, float, tuple[float, float], float], ...]]] = {
    "O-H water/alcohol": {
        "NIR": (
            (1450, 15, (80, 140), 1.0),  # first overtone
            (1940, 15, (90, 150), 1.6),  # stretch + bend combination
            (970, 10, (50, 90), 0.08),  # second overtone
            (1190, 10, (50, 90), 0.05),  # combination
            (760, 10, (40, 70), 0.01),  # third overtone
        ),
        "IR": (
            (3350, 80, (200, 400), 1.0),  # H-bonded stretch
            (1640, 15, (40, 80), 0.3),  # H-O-H bend
            (1050, 40, (30, 80), 0.3),  # C-O stretch of alcohols
        ),
        "Raman": (
            (3400, 60, (150, 300), 0.3),
            (1640, 15, (40, 80), 0.05),
        ),
    },
    "C-H aliphatic": {
        "NIR": (
            (1210, 10, (25, 45), 0.15),  # second overtone CH2
            (1725, 10, (25, 50), 1.0),  # first overtone CH2
            (1765, 10, (25, 45), 0.7),
            (2310, 10, (25, 50), 1.5),  # stretch + bend combinations
            (2350, 10, (25, 50), 1.2),
            (1390, 10, (20, 40), 0.2),
            (915, 10, (20, 40), 0.02),  # third overtone
        ),
        "IR": (
            (2925, 10, (15, 35), 1.0),
            (2855, 8, (10, 25), 0.7),
            (2960, 8, (10, 25), 0.5),
            (1465, 8, (10, 25), 0.3),
            (1375, 8, (8, 20), 0.2),
            (720, 5, (5, 15), 0.1),
        ),
        "Raman": (
            (2850, 8, (8, 20), 0.8),
            (2885, 8, (8, 20), 1.0),
            (2930, 10, (10, 25), 0.6),
            (1440, 8, (8, 20), 0.6),
            (1300, 8, (6, 15), 0.4),
            (1060, 10, (5, 15), 0.2),
            (1130, 10, (5, 15), 0.2),
        ),
    },
    "C-H aromatic": {
        "NIR": (
            (1685, 8, (20, 40), 0.5),
            (1145, 8, (20, 35), 0.1),
            (2150, 15, (30, 50), 0.4),
            (875, 10, (20, 30), 0.02),
        ),
        "IR": (
            (3030, 15, (10, 25), 0.3),
            (1600, 10, (8, 20), 0.4),
            (1500, 10, (8, 20), 0.5),
            (750, 20, (8, 20), 0.7),
            (700, 10, (8, 20), 0.5),
        ),
        "Raman": (
            (3060, 10, (8, 20), 0.6),
            (1000, 3, (4, 8), 1.0),  # ring breathing
            (1600, 8, (6, 15), 0.6),
            (1030, 5, (5, 10), 0.3),
            (620, 10, (5, 12), 0.2),
        ),
    },
    "N-H amine/amide": {
        "NIR": (
            (1510, 15, (50, 100), 0.5),
            (2055, 15, (50, 100), 0.7),
            (2180, 15, (40, 70), 0.8),
            (1030, 15, (40, 70), 0.05),
            (1980, 15, (40, 70), 0.3),
        ),
        "IR": (
            (3300, 50, (60, 150), 0.6),
            (1650, 15, (25, 50), 1.0),  # amide I
            (1545, 15, (25, 50), 0.7),  # amide II
            (1240, 20, (20, 50), 0.3),
        ),
        "Raman": (
            (3300, 30, (40, 100), 0.2),
            (1660, 15, (20, 40), 0.5),
            (1250, 20, (20, 40), 0.4),
            (940, 20, (10, 30), 0.2),
        ),
    },
    "C=O carbonyl/ester": {
        "NIR": (
            (1900, 15, (30, 60), 0.1),
            (2140, 15, (40, 60), 0.1),
        ),
        "IR": (
            (1725, 25, (15, 35), 1.5),
            (1200, 50, (20, 60), 0.8),
            (1170, 30, (20, 60), 0.6),
        ),
        "Raman": (
            (1730, 20, (10, 25), 0.3),
            (860, 30, (10, 30), 0.2),
        ),
    },
    "C-O-H carbohydrate": {
        "NIR": (
            (2100, 15, (60, 110), 0.9),
            (1580, 15, (60, 110), 0.3),
            (2280, 15, (40, 80), 0.4),
            (1200, 10, (40, 70), 0.1),
            (1490, 10, (50, 80), 0.3),
        ),
        "IR": (
            (1030, 20, (30, 70), 1.2),
            (1080, 20, (30, 60), 0.8),
            (1150, 20, (20, 50), 0.5),
            (3350, 60, (200, 350), 0.7),
            (930, 20, (15, 30), 0.2),
        ),
        "Raman": (
            (480, 20, (15, 30), 0.6),
            (860, 20, (10, 25), 0.3),
            (940, 20, (10, 25), 0.3),
            (1080, 15, (10, 25), 0.5),
            (1340, 15, (10, 30), 0.3),
            (2910, 10, (15, 30), 0.6),
        ),
    },
    "C=C alkene": {
        "NIR": (
            (1620, 10, (20, 40), 0.1),
            (2140, 10, (30, 50), 0.2),
        ),
        "IR": (
            (1650, 10, (8, 20), 0.2),
            (3080, 10, (10, 20), 0.2),
            (910, 10, (8, 20), 0.4),
            (990, 10, (8, 20), 0.3),
        ),
        "Raman": (
            (1655, 8, (6, 15), 1.0),
            (3010, 10, (8, 20), 0.4),
            (1265, 10, (8, 20), 0.3),
        ),
    },
    "sulphur S-H/C-S/S-S": {
        "NIR": ((1740, 10, (20, 40), 0.05),),
        "IR": (
            (2570, 10, (10, 20), 0.1),
            (650, 20, (10, 25), 0.2),
        ),
        "Raman": (
            (510, 15, (5, 15), 0.8),
            (650, 20, (5, 15), 0.4),
            (2570, 10, (10, 20), 0.5),
        ),
    },
    "nitrile C≡N": {
        "NIR": (),
        "IR": ((2240, 15, (6, 15), 0.5),),
        "Raman": ((2240, 15, (5, 12), 0.8),),
    },
    "pigment (electronic)": {
        "NIR": (
            (675, 30, (30, 60), 0.8),  # chlorophyll-like Q band
            (470, 40, (60, 120), 1.2),  # carotenoid-like
        ),
        "IR": (),
        "Raman": (),
    },
}
# Pigments are rarer than the common functional groups.
_GROUP_WEIGHTS = np.array([3, 4, 2, 2, 2, 3, 1, 0.5, 0.5, 0.5])

# Component-specific fingerprint bands: (count range, position range, FWHM range, height range).
_FINGERPRINT = {
    "NIR": ((0, 3), (1100, 2450), (30, 80), (0.05, 0.3)),
    "IR": ((3, 10), (600, 1500), (5, 30), (0.05, 0.6)),
    "Raman": ((3, 10), (200, 1700), (4, 15), (0.05, 0.8)),
}
# Probability that a band is purely Gaussian (η = 0) or purely Lorentzian (η = 1); the rest draw
# η uniformly in [0, 1]. NIR bands are closest to Gaussian, Raman lines to Lorentzian.
_SHAPE_P = {"NIR": (0.6, 0.05), "IR": (0.3, 0.2), "Raman": (0.1, 0.5)}


@dataclasses.dataclass(frozen=True)
class Bands:
    """Bands of one component in one modality (all arrays (k,), in cm⁻¹).

    Attributes:
      center: band centres (absolute wavenumber; Raman shift for Raman).
      fwhm: full widths at half maximum.
      eta: pseudo-Voigt Lorentzian fraction in [0, 1].
      height: peak heights before the component's normalisation to a maximum of 1.
    """

    center: np.ndarray
    fwhm: np.ndarray
    eta: np.ndarray
    height: np.ndarray


@dataclasses.dataclass(frozen=True)
class Component:
    """A pure component: its functional groups and its bands per modality."""

    component_id: int
    groups: tuple[str, ...]
    bands: dict[str, Bands]


def pseudo_voigt(
    x: np.ndarray, center: np.ndarray, fwhm: np.ndarray, eta: np.ndarray, height: np.ndarray
) -> np.ndarray:
    """Sum of pseudo-Voigt bands with unit-height profiles scaled by `height`.

    Args:
      x: (n,) positions (same unit as centre and FWHM).
      center, fwhm, eta, height: (k,) band parameters.

    Returns:
      (n,) float64 sum over the k bands.
    """
    if center.size == 0:
        return np.zeros(x.shape)
    d = (x[None, :] - center[:, None]) / (0.5 * fwhm[:, None])  # distance in half widths
    gauss = np.exp(-np.log(2.0) * d * d)
    lorentz = 1.0 / (1.0 + d * d)
    profile = (1.0 - eta[:, None]) * gauss + eta[:, None] * lorentz
    return height @ profile


def _draw_eta(rng: np.random.Generator, modality: str, k: int) -> np.ndarray:
    p_gauss, p_lorentz = _SHAPE_P[modality]
    u = rng.random(k)
    eta = rng.random(k)
    return np.where(u < p_gauss, 0.0, np.where(u < p_gauss + p_lorentz, 1.0, eta))


def _nm_to_cm1(center_nm: np.ndarray, fwhm_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Width conversion at the centre: dν = 1e7 dλ / λ².
    return 1e7 / center_nm, 1e7 * fwhm_nm / center_nm**2


def make_component(seed: int, component_id: int) -> Component:
    """Draws component `component_id` of the library of `seed` (independent of any other).

    Args:
      seed: library seed.
      component_id: non-negative component index.

    Returns:
      The component with its bands in every modality.
    """
    rng = np.random.default_rng([seed, COMPONENT_STREAM, component_id])
    names = list(GROUPS)
    n_groups = int(rng.integers(1, 4))
    chosen = rng.choice(
        len(names), size=n_groups, replace=False, p=_GROUP_WEIGHTS / _GROUP_WEIGHTS.sum()
    )
    abundance = rng.uniform(0.3, 1.0, size=n_groups)  # how much of each group the molecule has
    bands = {}
    for modality in MODALITIES:
        centers, fwhms, heights = [], [], []
        for g, a in zip(chosen, abundance, strict=True):
            table = GROUPS[names[g]][modality]
            if not table:
                continue
            c0, jitter, w_lo, w_hi, rel = np.array([(c, j, *w, r) for c, j, w, r in table]).T
            k = len(table)
            centers.append(c0 + rng.uniform(-1, 1, k) * jitter)
            fwhms.append(rng.uniform(w_lo, w_hi))
            heights.append(a * rel * rng.uniform(0.6, 1.4, k))
        (k_lo, k_hi), (p_lo, p_hi), (w_lo, w_hi), (h_lo, h_hi) = _FINGERPRINT[modality]
        k = int(rng.integers(k_lo, k_hi + 1))
        centers.append(rng.uniform(p_lo, p_hi, k))
        fwhms.append(rng.uniform(w_lo, w_hi, k))
        heights.append(rng.uniform(h_lo, h_hi, k))
        center, fwhm, height = (np.concatenate(v) for v in (centers, fwhms, heights))
        if modality == "NIR":
            center, fwhm = _nm_to_cm1(center, fwhm)
        eta = _draw_eta(rng, modality, center.size)
        bands[modality] = Bands(center=center, fwhm=fwhm, eta=eta, height=height)
    return Component(component_id=component_id, groups=tuple(names[g] for g in chosen), bands=bands)


def component_spectrum(component: Component, modality: str, wavenumber: np.ndarray) -> np.ndarray:
    """A component's absorptivity (or Raman cross-section) on a grid, scaled to a maximum of 1.

    Args:
      component: the component.
      modality: 'NIR', 'IR' or 'Raman'.
      wavenumber: (n,) grid in cm⁻¹ (Raman shift for Raman).

    Returns:
      (n,) float64, non-negative, maximum 1 (all zeros if the component has no band in range).
    """
    b = component.bands[modality]
    spectrum = pseudo_voigt(wavenumber, b.center, b.fwhm, b.eta, b.height)
    peak = spectrum.max(initial=0.0)
    return spectrum / peak if peak > 0 else spectrum
