"""The pretrained export shipped with the package, and leave-one-dataset-out for every export."""

import json
import shutil

import pytest

from caltransfer_jax.benchmark import runner
from caltransfer_jax.benchmark.metrics import regression_metrics
from caltransfer_jax.benchmark.protocol import PairedData, make_splits
from caltransfer_jax.data import dataset_file
from caltransfer_jax.models import export
from configs import adapt, benchmark


def test_the_shipped_export_reproduces_its_recorded_master_on_master_r2():
    from caltransfer_jax.methods.model.estimators import ModelFrozen

    directory = export.resolve(export.BUNDLED)
    checks = json.loads((directory / "CHECKS.json").read_text())
    corn = dataset_file.load("corn")
    split = make_splits(corn.spectra.sample_id, 1, 0.25, 0)[0]
    data = PairedData(corn.spectra, "m5", "m5")
    y = data.labels("moisture", split.pool)
    mu, sd = y.mean(), y.std()
    settings = adapt.model_config().to_dict()
    method = ModelFrozen(settings, corn.spectra.wavenumber, "NIR", seed=0)
    method.fit(data.values("source", split.pool), (y - mu) / sd)
    predicted = method.predict(data.values("target", split.test)) * sd + mu
    r2 = regression_metrics(data.labels("moisture", split.test), predicted)["r2"]
    assert r2 == pytest.approx(checks["corn m5 moisture split 0 master_on_master r2"], abs=1e-6)
    assert export.corpora(export.load_export(directory)[1]) == ["simulated"]
    assert sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) < 20 * 2**20


def test_rows_refuse_an_export_pretrained_on_the_evaluated_data_set(tmp_path, tiny_export):
    seen = tmp_path / "export"
    shutil.copytree(tiny_export, seen)
    config = json.loads((seen / "config.json").read_text())
    config["data"]["tfds_dirs"] = ["/data/paired_corn/1.0.0"]
    config["data"]["weights"] = [1.0, 1.0]
    (seen / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"pretrained on \['/data/paired_corn/1.0.0'\].*'corn'"):
        export.check_unseen(str(seen), "corn")
    export.check_unseen(str(seen), "tablets")  # another data set: allowed
    bench = benchmark.get_config("quick")
    bench.methods = ("model_frozen",)
    bench.model.init = str(seen)
    with pytest.raises(ValueError, match="leave-one-dataset-out"):
        runner.run(bench, tmp_path / "bench")
    assert not (tmp_path / "bench").exists()
    assert export.corpora(export.load_export(tiny_export)[1]) == ["simulated"]
