"""Real spectra on the model's grid: two instruments of other ranges and units are read alike."""

import numpy as np
import pytest

from caltransfer_jax.methods.model.grid import ModelGrid
from configs import pretrain


def _spectrum(nm: np.ndarray) -> np.ndarray:
    """One smooth absorbance spectrum as a function of wavelength (nm)."""
    return 0.5 + 0.3 * np.sin(nm / 90.0) + 2e-4 * nm + 0.2 * np.exp(-(((nm - 1940) / 60) ** 2))


def test_both_instruments_are_read_on_the_range_they_share_and_alike():
    config = pretrain.get_config("tiny")
    config.data.num_points = 512  # fine enough for the interpolation below to be exact-ish
    grating = 1e7 / np.linspace(1100.0, 2498.0, 700)  # nm axis, as cm⁻¹
    ft_nir = np.linspace(4000.0, 10000.0, 1500)  # cm⁻¹ axis: 1000–2500 nm
    master = ModelGrid(config, grating, "NIR", other=ft_nir)
    target = ModelGrid(config, ft_nir, "NIR", other=grating)
    on_master = master(_spectrum(1e7 / grating)[None])
    on_target = target(_spectrum(1e7 / ft_nir)[None])

    # The same grid points for both, inside 1100–2498 nm only (the FT-NIR's 1000–1100 nm is
    # not read), and every valid point is a feature.
    np.testing.assert_array_equal(on_master["valid"], on_target["valid"])
    np.testing.assert_array_equal(on_master["wavenumber"], on_target["wavenumber"])
    valid = on_master["valid"][0]
    nm = 1e7 / on_master["wavenumber"][0, valid]
    assert nm.min() >= 1100.0 and nm.max() <= 2498.0
    assert on_master["feature_index"].shape == (1, valid.sum())
    # One spectrum, measured on both, gives the model the same standardised input: the
    # standardisation runs over the same points.
    np.testing.assert_allclose(on_master["values"], on_target["values"], atol=2e-3)
    np.testing.assert_allclose(on_master["offset"], on_target["offset"], rtol=1e-3)

    # Alone, an instrument is read on its own full range.
    alone = ModelGrid(config, ft_nir, "NIR")(_spectrum(1e7 / ft_nir)[None])
    assert alone["valid"].sum() > valid.sum()


def test_instruments_that_share_too_little_of_the_grid_are_refused():
    config = pretrain.get_config("tiny")
    with pytest.raises(ValueError, match="share fewer than 2 points"):
        ModelGrid(
            config,
            1e7 / np.linspace(900.0, 1000.0, 50),
            "NIR",
            other=1e7 / np.linspace(2000.0, 2400.0, 50),
        )
