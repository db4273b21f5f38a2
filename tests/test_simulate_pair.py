"""The simulated transfer data set: one family on fixed instruments, written as a dataset file."""

import numpy as np
import pytest

from caltransfer_jax.data import dataset_file
from caltransfer_jax.simulate import Simulator, SimulatorConfig
from caltransfer_jax.simulate.pair import simulate_pair, write_pair


def test_family_samples_are_of_the_family_on_exactly_the_instruments():
    sim = Simulator(SimulatorConfig(seed=0))
    samples = [sim.family_sample(0, n, (0, 5, 8)) for n in range(6)]
    assert all(s.family.family_id == 0 and s.instruments == (0, 5, 8) for s in samples)
    assert all(len(s.jitter) == 3 for s in samples)
    # Distinct compositions, the same for the same (family, index), whatever else was drawn.
    assert len({s.fractions.tobytes() for s in samples}) == 6
    again = Simulator(SimulatorConfig(seed=0)).family_sample(0, 4, (0, 5, 8))
    np.testing.assert_array_equal(again.fractions, samples[4].fractions)
    records = sim.measure(samples)
    assert [r["instrument"].tolist() for r in records] == [[0, 5, 8]] * 6
    # Family 4 of seed 0 is an IR family: NIR instruments are refused, as are repeats.
    with pytest.raises(ValueError, match="family 4 is IR"):
        sim.family_sample(4, 0, (0, 5))
    with pytest.raises(ValueError, match="distinct"):
        sim.family_sample(0, 0, (0, 0))


def test_written_pair_reads_back_as_a_dataset_with_the_simulated_truth(tmp_path):
    path = write_pair(tmp_path / "pair", seed=0, family_id=0, num_samples=20, num_properties=2)
    dataset = dataset_file.load(path)
    assert dataset.instruments == ("nir00", "nir05", "nir08")
    assert len(dataset.properties) == 2
    # Different ranges and resolutions: kept native for the model, on the overlap for the rest.
    assert dataset.native is not None
    sizes = {name: dataset.own(name).values.shape for name in dataset.instruments}
    assert sizes == {"nir00": (20, 700), "nir05": (20, 256), "nir08": (20, 700)}
    parts, names = simulate_pair(0, 0, (0, 5, 8), 20, 2)
    assert list(dataset.properties) == names
    truth = parts["nir05"]
    columns = [truth.label_names.index(n) for n in names]
    own = dataset.own("nir05")
    order = np.argsort(own.sample_id.astype(int))
    np.testing.assert_allclose(own.labels[order], truth.labels[:, columns], rtol=1e-6)
    np.testing.assert_allclose(own.values[order], truth.values, rtol=1e-6)
    # The chosen properties are the components that vary most.
    spread = truth.labels[:, : truth.labels.shape[1] - 1].std(axis=0)
    assert min(spread[columns]) >= max(np.delete(spread, columns))
    with pytest.raises(FileExistsError, match="not empty"):
        write_pair(tmp_path / "pair")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"instruments": (0,)}, "two or more instruments"),
        ({"instruments": (0, 99)}, "no instruments"),
        ({"family_id": 4}, "family 4 is IR"),
        ({"num_properties": 9}, "num_properties"),
        ({"num_samples": 3}, "num_samples"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_written(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_pair(tmp_path / "pair", **kwargs)
    assert not (tmp_path / "pair").exists()
