"""Input pipeline: determinism, resume, per-process split, token grid, tfds round trip, errors."""

import os
import pathlib

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import Mesh

from caltransfer_jax.pretrain.input_pipeline import (
    CorpusError,
    InputPipeline,
    PipelineState,
    SimulatedSource,
    TfdsSource,
    make_global_batch,
    make_pipeline,
    to_grid,
)
from caltransfer_jax.simulate import SimulatorConfig
from configs import simulate as simulate_config
from data_prep import simulated_builder

CONFIG = SimulatorConfig(seed=0, num_components=24, num_families=12)
L = 512


class ListSource:
    """A finite in-memory source (shuffled per epoch by the pipeline)."""

    def __init__(self, records):
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        return self.records[index]


@pytest.fixture(scope="module")
def source():
    return SimulatedSource(CONFIG)


@pytest.fixture(scope="module")
def finite(source):
    return ListSource(source.__getitems__(range(40)))


def pipeline(sources, **kw):
    args = {"global_batch": 8, "num_points": L, "seed": 0, "process_index": 0, "process_count": 1}
    return InputPipeline(sources, **{**args, **kw})


def assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batch_layout(source):
    batch = pipeline([source]).batch(0)
    c = CONFIG.max_components
    expected = {
        "values": ((8, 2, L), np.float32),
        "wavenumber": ((8, 2, L), np.float32),
        "valid": ((8, 2, L), np.bool_),
        "offset": ((8, 2), np.float32),
        "scale": ((8, 2), np.float32),
        "modality": ((8, 2), np.int32),
        "instrument": ((8, 2), np.int32),
        "sample_id": ((8,), np.int32),
        "paired": ((8,), np.bool_),
        "source": ((8,), np.int32),
        "concentrations": ((8, c), np.float32),
        "component_ids": ((8, c), np.int32),
        "path_length": ((8,), np.float32),
    }
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
    assert np.all(batch["instrument"][:, 0] != batch["instrument"][:, 1])  # two instruments
    assert np.all(batch["paired"])
    for row in range(8):
        for view in range(2):
            valid = batch["valid"][row, view]
            wn = batch["wavenumber"][row, view][valid]
            assert np.all(np.diff(wn) > 0)  # ascending wavenumber
            assert np.all(batch["values"][row, view][~valid] == 0)
            assert batch["values"][row, view][valid].std() == pytest.approx(1.0, abs=1e-3)


def test_same_seed_same_batches_and_seed_changes_them(source):
    a, b = pipeline([source]), pipeline([source])
    assert_batches_equal(a.batch(5), b.batch(5))
    assert not np.array_equal(pipeline([source], seed=1).batch(5)["values"], a.batch(5)["values"])


@pytest.mark.parametrize("prefetch", [0, 2])
def test_resume_continues_exactly(source, prefetch):
    reference = pipeline([source])
    expected = [next(reference) for _ in range(5)]
    first = pipeline([source], prefetch=prefetch)
    for _ in range(3):
        next(first)
    state = PipelineState.from_json(first.get_state().to_json())  # as stored in a checkpoint
    assert state.step == 3
    resumed = pipeline([source], prefetch=prefetch)
    resumed.set_state(state)
    assert_batches_equal(next(resumed), expected[3])
    assert_batches_equal(next(resumed), expected[4])
    assert_batches_equal(next(pipeline([source]).iter_from_step(4)), expected[4])
    with pytest.raises(ValueError, match="does not match"):
        pipeline([source], seed=7).set_state(state)


@pytest.mark.parametrize("kind", ["simulated", "finite"])
def test_processes_read_disjoint_parts(source, finite, kind):
    src = source if kind == "simulated" else finite
    whole = pipeline([src], global_batch=8)
    parts = [pipeline([src], global_batch=8, process_index=p, process_count=2) for p in (0, 1)]
    for step in range(3):
        local = [p.batch(step) for p in parts]
        assert all(b["values"].shape[0] == 4 for b in local)  # local batch = global / 2
        ids = [set(b["sample_id"].tolist()) for b in local]
        if kind == "simulated":
            assert not ids[0] & ids[1]
        joined = {k: np.concatenate([b[k] for b in local]) for k in local[0]}
        assert_batches_equal(joined, whole.batch(step))
    with pytest.raises(ValueError, match="not divisible"):
        pipeline([src], global_batch=9, process_index=0, process_count=2)


def test_finite_source_epochs_visit_each_record_once(finite):
    p = pipeline([finite], global_batch=8)
    seen = np.concatenate([p.slots(step)[1] for step in range(5)])  # 40 slots = 1 epoch
    assert sorted(seen.tolist()) == list(range(40))
    nxt = np.concatenate([p.slots(step)[1] for step in range(5, 10)])
    assert sorted(nxt.tolist()) == list(range(40)) and not np.array_equal(seen, nxt)


def test_mixture_of_sources(source, finite):
    only_first = pipeline([source, finite], weights=[1.0, 0.0]).batch(0)
    assert np.all(only_first["source"] == 0)
    mixed = [pipeline([source, finite], weights=[0.5, 0.5]).batch(s)["source"] for s in range(8)]
    share = np.concatenate(mixed).mean()
    assert 0.25 < share < 0.75
    assert_batches_equal(
        pipeline([source, finite], weights=[0.5, 0.5]).batch(3),
        pipeline([source, finite], weights=[0.5, 0.5]).batch(3),
    )


def test_single_view_records_are_marked_unpaired(finite):
    record = dict(finite[0])
    n = int(record["lengths"][0])
    record.update(
        values=record["values"][:n],
        wavenumber=record["wavenumber"][:n],
        lengths=record["lengths"][:1],
        instrument=record["instrument"][:1],
    )
    batch = pipeline([ListSource([record] * 8)]).batch(0)
    assert not batch["paired"].any()
    np.testing.assert_array_equal(batch["values"][:, 0], batch["values"][:, 1])


def test_to_grid_flips_crops_pads_and_normalises():
    wn = np.linspace(10000, 4000, 700)  # descending, as a wavelength axis gives
    x = np.sin(wn / 300) + 2.0
    g = to_grid(x, wn, 1024)
    assert g["valid"].sum() == 700 and np.all(np.diff(g["wavenumber"][:700]) > 0)
    raw = g["values"][:700] * g["scale"] + g["offset"]
    np.testing.assert_allclose(raw, x[::-1], atol=1e-5)
    cropped = to_grid(x, wn, 256, np.random.default_rng(0))
    assert cropped["valid"].all()
    assert np.all(np.isin(cropped["wavenumber"], wn.astype(np.float32)))
    none = to_grid(x, wn, 1024, normalize="none")
    assert none["scale"] == 1 and none["offset"] == 0
    with pytest.raises(ValueError, match="normalize"):
        to_grid(x, wn, 1024, normalize="minmax")


def test_pipeline_from_config(built):
    config = simulate_config.get_config("tiny")
    p = make_pipeline(config, process_index=0, process_count=1)
    assert_batches_equal(next(p), pipeline([SimulatedSource(CONFIG)]).batch(0))
    config.tfds_dirs = (str(built[1]),)
    config.weights = (0.5, 0.5)
    mixed = make_pipeline(config, process_index=0, process_count=1).batch(0)
    assert set(mixed["source"].tolist()) <= {0, 1}
    config.weights = (1.0,)
    with pytest.raises(ValueError, match="2 sources"):
        make_pipeline(config, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="unknown data config"):
        simulate_config.get_config("huge")


def test_global_batch_is_sharded_over_the_data_axis(source):
    mesh = Mesh(np.array(jax.devices()), ("data",))
    n = len(jax.devices())
    local = pipeline([source], global_batch=2 * n).batch(0)
    arrays = make_global_batch(local, mesh)
    assert arrays["values"].shape == (2 * n, 2, L)
    assert arrays["values"].sharding.spec == jax.sharding.PartitionSpec("data")
    np.testing.assert_array_equal(np.asarray(arrays["sample_id"]), local["sample_id"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    return data_dir, pathlib.Path(simulated_builder.build(str(data_dir), 48, seed=0))


def test_tfds_round_trip(built, source):
    data_dir, path = built
    from_dir = TfdsSource(path)
    assert len(from_dir) == 48
    expected = SimulatedSource(SimulatorConfig(seed=0)).__getitems__([0, 17, 47])
    by_name = tfds.data_source("simulated_spectra/n48_seed0_v2", data_dir=str(data_dir))
    for got in (from_dir.__getitems__([0, 17, 47]), [by_name["train"][i] for i in (0, 17, 47)]):
        for a, b in zip(got, expected, strict=True):
            for key in b:
                np.testing.assert_array_equal(np.asarray(a[key]), b[key], err_msg=key)
    assert len(TfdsSource(path, "validation")) == 4
    assert TfdsSource(data_dir).path == path  # found below a data directory
    batch = pipeline([from_dir]).batch(0)
    assert batch["values"].shape == (8, 2, L)


def _damaged(built, tmp_path, damage):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built[1], copy)
    damage(copy)
    return copy


SHARD = "simulated_spectra-train.array_record-00000-of-00001"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: os.truncate(d / SHARD, 70_000), "damaged"),
        (lambda d: os.remove(d / SHARD), "is missing"),
        (lambda d: (d / "dataset_info.json").write_text('{"name": '), "unreadable tfds build"),
        (lambda d: os.remove(d / "dataset_info.json"), "no tfds build here"),
    ],
)
def test_damaged_corpus_gives_a_clear_error(built, tmp_path, damage, message):
    copy = _damaged(built, tmp_path, damage)
    with pytest.raises(CorpusError, match=message) as info:
        TfdsSource(copy)
    assert str(copy) in str(info.value)


def test_missing_corpus_and_split(built, tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        TfdsSource(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="no split 'test'"):
        TfdsSource(built[1], "test")


def test_views_on_the_master_grid_are_read_as_the_model_methods_read_a_pair(source):
    from caltransfer_jax.data.spectra import MODALITIES
    from caltransfer_jax.methods.model.grid import ModelGrid
    from configs import pretrain as pretrain_config

    config = pretrain_config.get_config("tiny")
    config.data.num_points = L
    master_grid = config.data.master_grid
    on_grid = pipeline([source], master_grid=master_grid)
    batch, records = on_grid.batch(0), source.__getitems__(range(8))
    _, index, _ = on_grid.slots(0)
    shared = 0
    for row, i in enumerate(index):
        record = records[int(i)]
        # The pipeline's view choice, replayed: the same two instruments' spectra.
        ends = np.cumsum(record["lengths"])
        views = []
        for inst in batch["instrument"][row]:
            v = int(np.flatnonzero(record["instrument"] == inst)[0])
            part = slice(int(ends[v] - record["lengths"][v]), int(ends[v]))
            views.append((record["values"][part], record["wavenumber"][part]))
        for k, (values, wavenumber) in enumerate(views):
            other = views[1 - k][1]
            modality = MODALITIES[int(record["modality"])]
            try:
                grid = ModelGrid(config, wavenumber, modality, other=other)
            except ValueError:  # no shared range: each view on its own
                grid = ModelGrid(config, wavenumber, modality)
            expected = grid(values[None])
            for key in ("values", "wavenumber", "valid"):
                np.testing.assert_allclose(
                    batch[key][row, k], expected[key][0], rtol=1e-5, atol=1e-5, err_msg=key
                )
        shared += np.array_equal(batch["wavenumber"][row, 0], batch["wavenumber"][row, 1])
    assert shared >= 4  # most pairs share a range, and are then read on the same points
    config.data.views = "master"
    with pytest.raises(ValueError, match="data.views must be 'native' or 'master_grid'"):
        make_pipeline(config.data, process_index=0, process_count=1)
