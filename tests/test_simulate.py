"""Simulator: determinism, random access, pairing, Beer–Lambert, components, Spectra output."""

import numpy as np
import pytest

from caltransfer_jax.data.spectra import Spectra
from caltransfer_jax.simulate import FINE_GRIDS, Simulator, SimulatorConfig, bands, split_views
from caltransfer_jax.simulate.instruments import TEMPLATES

SMALL = {"num_components": 24, "num_families": 12}


@pytest.fixture(scope="module")
def sim():
    return Simulator(SimulatorConfig(seed=3, **SMALL))


def _assert_records_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_same_seed_same_corpus_and_random_access(sim):
    other = Simulator(SimulatorConfig(seed=3, **SMALL))
    batch = sim.generate(range(12))
    _assert_records_equal(batch, other.generate(range(12)))
    # Any sample alone, in any order, equals the same sample generated in a batch.
    _assert_records_equal([batch[7], batch[2]], other.generate([7, 2]))
    different = Simulator(SimulatorConfig(seed=4, **SMALL)).generate(range(12))
    same = [np.array_equal(a["values"], b["values"]) for a, b in zip(batch, different, strict=True)]
    assert not all(same)


def test_record_layout(sim):
    cfg = sim.config
    for rec in sim.generate(range(10)):
        v = cfg.views_per_sample
        assert rec["instrument"].shape == (v,) and rec["lengths"].shape == (v,)
        assert len(set(rec["instrument"].tolist())) == v  # distinct instruments
        modalities = {sim.instruments[i].modality for i in rec["instrument"]}
        assert modalities == {("NIR", "IR", "Raman")[int(rec["modality"])]}
        assert rec["values"].dtype == np.float32 and rec["values"].size == rec["lengths"].sum()
        assert np.all(np.isfinite(rec["values"]))
        k = int((rec["component_ids"] >= 0).sum())
        assert 2 <= k <= cfg.max_components
        assert rec["concentrations"][:k].sum() == pytest.approx(1.0, abs=1e-5)
        assert np.all(rec["concentrations"][k:] == 0)
        values, wavenumber = split_views(rec)
        for inst, x, wn in zip(rec["instrument"], values, wavenumber, strict=True):
            np.testing.assert_allclose(wn, sim.instruments[inst].wavenumber)
            assert x.size == sim.instruments[inst].axis.size


def test_paired_views_share_the_sample_and_differ_by_instrument_only():
    sim = Simulator(SimulatorConfig(seed=1, modality_weights=(1, 0, 0), **SMALL))
    records = sim.generate(range(16), effects=())
    compared = 0
    for rec in records:
        (a, b), _ = split_views(rec)
        ia, ib = (sim.instruments[i] for i in rec["instrument"])
        nm_a = ia.axis if ia.unit == "nm" else 1e7 / ia.axis
        nm_b = ib.axis if ib.unit == "nm" else 1e7 / ib.axis
        oa, ob = np.argsort(nm_a), np.argsort(nm_b)
        lo, hi = max(nm_a.min(), nm_b.min()), min(nm_a.max(), nm_b.max())
        if hi - lo < 100:
            continue
        grid = np.arange(lo, hi, 2.0)
        da = np.interp(grid, nm_a[oa], a[oa])
        db = np.interp(grid, nm_b[ob], b[ob])
        # With every instrument effect off, both read the same true spectrum (to interpolation).
        assert np.abs(da - db).max() < 1e-2 * np.ptp(da) + 1e-6
        compared += 1
    assert compared >= 5
    with_effects = sim.generate(range(16))
    assert not np.allclose(with_effects[0]["values"], records[0]["values"])
    # The instruments' true input is the sample's spectrum: concentrations live on the record.
    views = sim.to_spectra(with_effects)
    by_sample = {}
    for spectra in views.values():
        for sid, lab in zip(spectra.sample_id, spectra.labels, strict=True):
            by_sample.setdefault(sid, []).append(lab)
    assert all(len(v) == 2 and np.array_equal(v[0], v[1]) for v in by_sample.values())


def test_effects_off_reads_the_true_spectrum():
    sim = Simulator(SimulatorConfig(seed=2, modality_weights=(1, 1, 1), **SMALL))
    for rec in sim.generate(range(12), effects=()):
        sample = sim.sample(int(rec["sample_id"]))
        fine = sim.true_spectra([sample])[0]
        grid = FINE_GRIDS[sample.family.modality]
        for inst_id, x in zip(rec["instrument"], split_views(rec)[0], strict=True):
            inst = sim.instruments[inst_id]
            pos = grid.position(inst.axis, inst.unit)
            truth = np.interp(pos, np.arange(grid.size), fine)
            # Two linear interpolations (fine → internal → nominal grid) are the only error; it
            # grows for lines only a few grid steps wide (IR, Raman) when no ILS smooths them.
            tol = {"NIR": 2e-3, "IR": 2e-2, "Raman": 5e-2}[inst.modality]
            assert np.abs(x - truth).max() < tol * np.ptp(fine) + 1e-6


def test_beer_lambert_additive_in_concentration_and_path(sim):
    rng = np.random.default_rng(0)
    ids = np.array([[0, 5, 9, -1], [3, 4, -1, -1]])
    c1 = rng.uniform(0, 1, ids.shape) * (ids >= 0)
    c2 = rng.uniform(0, 1, ids.shape) * (ids >= 0)
    path = np.array([0.7, 2.0])
    for modality in ("NIR", "IR", "Raman"):
        a1 = sim.absorbance(modality, ids, c1, path)
        a2 = sim.absorbance(modality, ids, c2, path)
        a12 = sim.absorbance(modality, ids, c1 + c2, path)
        np.testing.assert_allclose(a12, a1 + a2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            sim.absorbance(modality, ids, c1, 2 * path), 2 * a1, rtol=1e-5, atol=1e-6
        )
        # The explicit sum of path · conc · ε.
        eps = sim.component_spectra(modality, [0, 5, 9])
        np.testing.assert_allclose(a1[0], path[0] * c1[0, :3] @ eps, rtol=1e-5, atol=1e-6)


def test_components_are_physical():
    for c in range(20):
        comp = bands.make_component(0, c)
        nir = comp.bands["NIR"]
        centers_nm = 1e7 / nir.center
        assert np.all((centers_nm > 400) & (centers_nm < 2500))
        fwhm_nm = nir.fwhm * centers_nm**2 / 1e7
        assert np.all((fwhm_nm >= 20) & (fwhm_nm <= 150))  # NIR bands are broad
        raman = comp.bands["Raman"]
        assert np.median(raman.fwhm) <= 30 and raman.fwhm.min() >= 4  # Raman lines are narrow
        ir = comp.bands["IR"]
        assert np.all((ir.center > 500) & (ir.center < 3700))
        for modality, grid in FINE_GRIDS.items():
            spectrum = bands.component_spectrum(comp, modality, grid.wavenumber)
            assert spectrum.min() >= 0 and spectrum.max() == pytest.approx(1.0)
    water_like = bands.GROUPS["O-H water/alcohol"]["NIR"]
    assert [b[0] for b in water_like[:2]] == [1450, 1940]


def test_pseudo_voigt_shapes():
    x = np.linspace(-50, 50, 2001)
    one = np.ones(1)
    for eta in (0.0, 0.5, 1.0):
        y = bands.pseudo_voigt(x, 0 * one, 10 * one, eta * one, 2 * one)
        assert y.max() == pytest.approx(2.0)
        above = x[y >= 1.0]
        assert above.max() - above.min() == pytest.approx(10.0, abs=0.1)  # FWHM
    gauss = bands.pseudo_voigt(x, 0 * one, 10 * one, 0 * one, one)
    lorentz = bands.pseudo_voigt(x, 0 * one, 10 * one, one, one)
    assert lorentz[0] > 100 * gauss[0]  # Lorentzian tails


def test_instruments_persistent_and_cover_the_templates(sim):
    again = Simulator(SimulatorConfig(seed=3, **SMALL))
    for a, b in zip(sim.instruments, again.instruments, strict=True):
        assert (a.shift, a.fwhm, a.gain, a.template) == (b.shift, b.fwhm, b.gain, b.template)
        np.testing.assert_array_equal(a.axis, b.axis)
    templates = {i.template for i in sim.instruments}
    assert templates == {t.name for ts in TEMPLATES.values() for t in ts}
    points = {i.axis.size for i in sim.instruments if i.modality == "NIR"}
    assert len(points) >= 5  # different point counts and ranges


def test_every_seed_draws_instruments_inside_the_simulation_grids():
    # A vis-NIR unit starting a little below 400 nm needs room for its margins below 350 nm.
    for seed in range(40):
        Simulator(SimulatorConfig(seed=seed, **SMALL))  # raises for a range outside a grid


def test_to_spectra(sim):
    views = sim.to_spectra(sim.generate(range(20)))
    for name, spectra in views.items():
        assert isinstance(spectra, Spectra)
        inst = next(i for i in sim.instruments if i.name == name)
        assert spectra.unit == inst.unit and spectra.modality == inst.modality
        np.testing.assert_allclose(spectra.axis, inst.axis)
        assert spectra.label_names[-1] == "path_length"
        assert set(spectra.instrument.tolist()) == {name}
