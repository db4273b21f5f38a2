"""Each instrument effect moves a spectrum in the expected direction, by the set amount."""

import dataclasses

import numpy as np
import pytest

from caltransfer_jax.simulate.instruments import (
    EFFECTS,
    FINE_GRIDS,
    PATH_DEGREE,
    Jitter,
    draw_jitter,
    make_instrument,
    measure,
)

NEUTRAL = {
    "shift": 0.0,
    "stretch": 0.0,
    "warp": 0.0,
    "offset": 0.0,
    "slope": 0.0,
    "curvature": 0.0,
    "gain": 1.0,
    "stray_light": 0.0,
    "nonlinearity": 0.0,
    "noise_counts": 0.0,
    "noise_relative": 0.0,
    "edge_loss": (0.0, 0.0),
    "response": (0.0, 0.0),
    "path_response": (0.0,) * PATH_DEGREE,
    "presentation": 0.0,
}


def nir_instrument(**changes):
    """The corn-like grating instrument (1100-2498 nm, 2 nm) with every effect neutral."""
    inst = make_instrument(0, 0, "NIR", 0)
    return dataclasses.replace(inst, **{**NEUTRAL, "fwhm": 10.0, **changes})


def raman_instrument(**changes):
    inst = make_instrument(0, 13, "Raman", 0)
    return dataclasses.replace(inst, **{**NEUTRAL, "fwhm": 5.0, **changes})


def band(center, fwhm, height, modality="NIR"):
    """(1, N) Gaussian band on the modality's fine grid, in its unit."""
    x = FINE_GRIDS[modality].axis
    return (height * np.exp(-4 * np.log(2) * ((x - center) / fwhm) ** 2))[None, :]


def no_jitter(inst, n=1, shift=0.0, offset=0.0, gain=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return Jitter(
        shift=np.full(n, shift),
        offset=np.full(n, offset),
        gain=np.full(n, gain),
        noise=rng.standard_normal((n, inst.axis.size), dtype=np.float32),
    )


def centroid(x, y, lo, hi):
    w = (x > lo) & (x < hi)
    return float(np.sum(x[w] * y[w]) / np.sum(y[w]))


def truth_at_axis(inst, fine):
    return np.interp(inst.axis, FINE_GRIDS["NIR"].axis, fine[0])


@pytest.mark.parametrize(
    ("changes", "effect", "expected"),
    [
        ({"shift": 1.5}, "axis", 1.5),
        ({"shift": -0.8}, "axis", -0.8),
        # Band at 1700 nm: u = 2 (1700 - 1100) / 1398 - 1 ≈ -0.1416.
        ({"stretch": 2.0}, "axis", 2.0 * -0.1416),
        ({"warp": 2.0}, "axis", 2.0 * 0.1416**2),
    ],
)
def test_axis_error_moves_band_centre(changes, effect, expected):
    inst = nir_instrument(**changes)
    inst = dataclasses.replace(inst, axis=1100 + 2.0 * np.arange(700))
    fine = band(1700, 30, 0.5)
    out = measure(inst, fine, no_jitter(inst), (effect,))[0]
    ref = measure(inst, fine, no_jitter(inst), ())[0]
    moved = centroid(inst.axis, out, 1620, 1780) - centroid(inst.axis, ref, 1620, 1780)
    assert moved == pytest.approx(expected, abs=0.02)


def test_jitter_shift_and_offset():
    inst = nir_instrument()
    fine = band(1700, 30, 0.5)
    ref = measure(inst, fine, no_jitter(inst), ())[0]
    out = measure(inst, fine, no_jitter(inst, shift=0.7, offset=0.01), ("jitter",))[0]
    moved = centroid(inst.axis, out - 0.01, 1620, 1780) - centroid(inst.axis, ref, 1620, 1780)
    assert moved == pytest.approx(0.7, abs=0.02)
    assert np.median(out[:100] - ref[:100]) == pytest.approx(0.01, abs=1e-5)


def test_resolution_broadens_and_lowers_a_band():
    inst = nir_instrument(fwhm=10.0)
    fine = band(1700, 10, 0.01)  # weak: transmittance ≈ linear in absorbance
    ref = measure(inst, fine, no_jitter(inst), ())[0]
    out = measure(inst, fine, no_jitter(inst), ("resolution",))[0]
    x = inst.axis

    def fwhm(y):
        c = centroid(x, y, 1650, 1750)
        w = (x > 1650) & (x < 1750)
        return 2.3548 * np.sqrt(np.sum((x[w] - c) ** 2 * y[w]) / np.sum(y[w]))

    assert fwhm(ref) == pytest.approx(10.0, rel=0.03)
    assert fwhm(out) == pytest.approx(np.hypot(10.0, 10.0), rel=0.03)  # Gaussian ⊛ Gaussian
    assert out.max() == pytest.approx(ref.max() / np.sqrt(2), rel=0.03)


def test_stray_light_lowers_high_absorbance():
    s = 1e-3
    inst = nir_instrument(stray_light=s)
    fine = band(1700, 40, 3.0)
    out = measure(inst, fine, no_jitter(inst), ("stray_light",))[0]
    t = 10.0 ** -truth_at_axis(inst, fine)
    np.testing.assert_allclose(out, -np.log10((t + s) / (1 + s)), atol=2e-3)
    assert out.max() < 2.75  # 3 AU read as ≈ 2.70
    assert abs(out[0]) < 1e-6  # zero absorbance is unaffected


def test_nonlinearity_lowers_high_absorbance():
    beta = 0.05
    inst = nir_instrument(nonlinearity=beta)
    fine = band(1700, 40, 2.0)
    out = measure(inst, fine, no_jitter(inst), ("nonlinearity",))[0]
    t = 10.0 ** -truth_at_axis(inst, fine)
    np.testing.assert_allclose(out, -np.log10(t * (1 - beta * t) / (1 - beta)), atol=2e-3)
    assert out.max() < 2.0 - 0.02 and abs(out[0]) < 1e-6


def test_gain_and_baseline():
    inst = nir_instrument(gain=1.05, offset=0.1, slope=0.05, curvature=0.02)
    fine = band(1700, 40, 1.0)
    ref = measure(inst, fine, no_jitter(inst), ())[0]
    np.testing.assert_allclose(
        measure(inst, fine, no_jitter(inst), ("gain",))[0], 1.05 * ref, rtol=1e-5, atol=1e-6
    )
    u = inst.u
    np.testing.assert_allclose(
        measure(inst, fine, no_jitter(inst), ("baseline",))[0] - ref,
        0.1 + 0.05 * u + 0.02 * u**2,
        atol=1e-6,
    )


def test_noise_level_and_its_growth_with_absorbance():
    sigma_c = 1e-3
    inst = nir_instrument(noise_counts=sigma_c)
    n = 200
    flat = np.zeros((n, FINE_GRIDS["NIR"].size))
    out = measure(inst, flat, no_jitter(inst, n, seed=1), ("noise",))
    assert abs(out.mean()) < 1e-4
    assert out.std() == pytest.approx(sigma_c / np.log(10), rel=0.03)  # σ_A = σ_T / (T ln 10)
    dense = measure(inst, np.repeat(band(1700, 40, 1.0), n, 0), no_jitter(inst, n), ("noise",))
    peak = np.argmin(np.abs(inst.axis - 1700))
    assert dense[:, peak].std() == pytest.approx(10 * out[:, peak].std(), rel=0.15)
    # Lower throughput at the range ends means more noise there.
    edgy = dataclasses.replace(inst, edge_loss=(0.0, 0.9))
    edge = measure(edgy, flat, no_jitter(inst, n, seed=1), ("noise",))
    assert edge[:, -1].std() > 5 * edge[:, 350].std()


def test_path_response_scales_absorbance_by_a_smooth_function_of_position():
    coefficients = (0.02, -0.01, 0.0, 0.005, 0.0, 0.0)
    inst = nir_instrument(path_response=coefficients)
    fine = band(1940, 60, 0.6) + 0.3
    truth = measure(inst, fine, no_jitter(inst), ())[0]
    scaled = measure(inst, fine, no_jitter(inst), ("path_response",))[0]
    u = inst.u
    # Legendre P1 = u, P2 = (3u² - 1)/2, P4 = (35u⁴ - 30u² + 3)/8, each scaled to unit RMS.
    basis = [u, (3 * u**2 - 1) / 2, None, (35 * u**4 - 30 * u**2 + 3) / 8, None, None]
    r = sum(c * b / np.sqrt(np.mean(b**2)) for c, b in zip(coefficients, basis, strict=True) if c)
    np.testing.assert_allclose(scaled, truth * (1 + r), rtol=1e-5)
    # The difference follows the absorbance: largest at the band's peak.
    diff = np.abs(scaled - truth)
    peak = np.argmin(np.abs(inst.axis - 1940))
    assert diff[peak] == pytest.approx(0.9 * abs(r[peak]), rel=1e-3)


def test_presentation_differs_per_measurement_and_scales_with_the_instrument():
    inst = nir_instrument(presentation=0.01)
    fine = np.repeat(band(1940, 60, 0.6) + 0.3, 400, 0)
    jitter = draw_jitter(inst, np.random.default_rng([3, 1]), 400)
    assert jitter.presentation.shape == (400, PATH_DEGREE)
    truth = measure(inst, fine, jitter, ())
    measured = measure(inst, fine, jitter, ("presentation",))
    relative = measured / truth - 1
    # Independent smooth functions per measurement, of RMS `presentation` on average.
    assert np.sqrt(np.mean(relative**2)) == pytest.approx(0.01, rel=0.15)
    assert abs(np.corrcoef(relative[0], relative[1])[0, 1]) < 0.99
    np.testing.assert_allclose(np.diff(relative, axis=1).std(), 0, atol=0.01 * 0.05)
    still = measure(dataclasses.replace(inst, presentation=0.0), fine, jitter, ("presentation",))
    np.testing.assert_array_equal(still, truth)


def test_path_length_effects_are_drawn_for_absorbance_instruments_only():
    for seed in range(20):
        nir = make_instrument(seed, 0, "NIR", 0)
        rms = np.sqrt(np.mean((np.asarray(nir.path_response) @ nir.legendre) ** 2))
        assert 1e-4 < rms < 0.1
        assert 5e-4 <= nir.presentation <= 1e-2
        raman = make_instrument(seed, 13, "Raman", 0)
        assert raman.path_response == (0.0,) * PATH_DEGREE and raman.presentation == 0.0


def test_raman_effects():
    inst = raman_instrument(
        stray_light=0.5, nonlinearity=0.05, gain=1.5, response=(0.2, 0.0), noise_relative=1e-3
    )
    fine = band(1000, 8, 1.0, "Raman") + 0.1
    ref = measure(inst, fine, no_jitter(inst), ())[0]
    x = inst.axis
    tail = measure(inst, fine, no_jitter(inst), ("stray_light",))[0] - ref
    assert np.all(tail > 0) and np.all(np.diff(tail) < 0)  # Rayleigh tail falls with shift
    peak = np.argmax(ref)
    saturated = measure(inst, fine, no_jitter(inst), ("nonlinearity",))[0]
    # Saturation relative to the brightest point: the peak loses a fraction β.
    assert saturated[peak] == pytest.approx(ref[peak] * 0.95, rel=2e-3)
    assert saturated[0] == pytest.approx(ref[0] * (1 - 0.05 * ref[0] / ref[peak]), rel=2e-3)
    gained = measure(inst, fine, no_jitter(inst), ("gain",))[0]
    np.testing.assert_allclose(gained, ref * 1.5 * (1 + 0.2 * inst.u), rtol=1e-5)
    n = 200
    noisy = measure(inst, np.repeat(fine, n, 0), no_jitter(inst, n), ("noise",))
    far = np.argmin(np.abs(x - 1500))
    assert noisy[:, peak].std() > 2 * noisy[:, far].std()  # shot noise grows with signal


def test_unknown_effect_and_range_outside_grid():
    inst = nir_instrument()
    with pytest.raises(ValueError, match="unknown instrument effects"):
        measure(inst, band(1700, 30, 0.5), no_jitter(inst), ("axis", "magic"))
    with pytest.raises(ValueError, match="outside the NIR simulation grid"):
        dataclasses.replace(inst, axis=np.linspace(2000, 3000, 100))
    assert set(EFFECTS) >= {"axis", "resolution", "stray_light", "nonlinearity", "noise"}


def test_temperature_moves_each_measurement_by_its_chemistry_times_its_kelvin():
    from caltransfer_jax.simulate.corpus import Simulator, SimulatorConfig

    config = SimulatorConfig(
        num_components=16,
        num_families=8,
        instruments_per_modality=(2, 0, 2),
        modality_weights=(0.5, 0.0, 0.5),
    )
    simulator = Simulator(config)
    ids = list(range(16))
    still = simulator.generate(ids, ())
    warm = simulator.generate(ids, ("temperature",))
    checked, shapes = 0, []
    for index, cold, hot in zip(ids, still, warm, strict=True):
        sample = simulator.sample(index)
        ends = np.cumsum(hot["lengths"])[:-1]
        for v, (a, b) in enumerate(
            zip(np.split(cold["values"], ends), np.split(hot["values"], ends), strict=True)
        ):
            inst = simulator.instruments[sample.instruments[v]]
            if inst.modality == "Raman":  # not modelled there
                np.testing.assert_array_equal(a, b)
                continue
            # With no other effect on, the change is the sample's dA/dT (its chemistry: each
            # component's bands move and change in strength by their own amounts) read by the
            # instrument, times this measurement's temperature.
            kelvin = float(sample.jitter[v].temperature[0]) * inst.temperature
            per_kelvin = simulator.true_spectra([sample], thermal=True)
            expected = measure(inst, per_kelvin, sample.jitter[v], ())[0] * kelvin
            # (float32 spectra of order 1: differences good to ~1e-7 absolute)
            np.testing.assert_allclose(b - a, expected, atol=1e-6 + 1e-3 * np.abs(expected).max())
            assert np.abs(b - a).max() > 0
            shapes.append((b - a) / kelvin)
            checked += 1
    assert checked >= 8
    # Per kelvin the change differs from sample to sample (it is not one instrument-wide shape).
    same_instrument = [s for s in shapes if s.size == shapes[0].size]
    assert np.corrcoef(np.array(same_instrument)).min() < 0.9
