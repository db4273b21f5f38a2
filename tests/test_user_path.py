"""A user's own instruments end to end: CSV files + a dataset file → benchmark → saved transfer
→ predictions with intervals, and the package layout that keeps this path light."""

import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from caltransfer_jax.data import dataset_file
from caltransfer_jax.data.csv_export import write_csv_dataset
from caltransfer_jax.data.spectra import SpectraError
from caltransfer_jax.methods import registry as methods_registry
from caltransfer_jax.transfer import CalibrationTransfer, workflow

REPO = pathlib.Path(__file__).parents[1]


def _bench(workdir, *overrides):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "caltransfer_jax.benchmark",
            "--config=configs/benchmark.py:custom",
            f"--workdir={workdir}",
            *overrides,
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    lines = (pathlib.Path(workdir) / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "fit_seconds"} for r in records]


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("tablets", ["--config.pairs=('spec2->spec1',)", "--config.use_original_split=True"]),
        (
            "corn",
            ["--config.pairs=('m5->mp6',)", "--config.properties=('oil',)"],
        ),
    ],
)
def test_csv_files_give_the_bundled_records(tmp_path, name, overrides):
    toml = write_csv_dataset(dataset_file.load(name), tmp_path / "csv")
    common = [
        *overrides,
        "--config.methods=('no_transfer','mean_recentring','standards_offset','pds','sbc')",
        "--config.ks=(0,5,10)",
        "--config.n_splits=2",
        "--config.n_draws=1",
        "--config.workers=1",
    ]
    from_files = _bench(tmp_path / "files", f"--config.dataset={toml}", *common)
    from_bundle = _bench(tmp_path / "bundle", f"--config.dataset={name}", *common)
    assert len(from_files) > 20
    assert _without_time(from_files) == _without_time(from_bundle)


def test_kennard_stone_only_and_k_beyond_the_pool(tmp_path):
    records = _bench(
        tmp_path,
        "--config.dataset=corn",
        "--config.pairs=('m5->mp6',)",
        "--config.properties=('oil',)",
        "--config.methods=('mean_recentring','pds')",
        "--config.ks=(0,5,70)",
        "--config.n_splits=1",
        "--config.n_draws=0",
        "--config.workers=1",
    )
    assert {r["k"] for r in records if r["method"] == "pds"} == {5}  # 70 > the pool of 60
    assert {r["selection"] for r in records if r["method"] == "pds"} == {"kennard_stone"}
    assert (tmp_path / "plots" / "r2_vs_k_oil.png").stat().st_size > 1000


def _ranges_dataset(directory: pathlib.Path) -> pathlib.Path:
    """Two simulated instruments: 570–1100 nm every 2 nm and 730–1100 nm every 2.5 nm."""
    rng = np.random.default_rng(0)
    n = 40
    conc = rng.uniform(0, 1, size=(n, 3))

    def measure(axis, shift, gain, offset):
        centres, widths = np.array([650.0, 850.0, 980.0]), np.array([30.0, 40.0, 25.0])
        bands = np.exp(-0.5 * ((axis[None] + shift - centres[:, None]) / widths[:, None]) ** 2)
        return gain * conc @ bands + offset + 0.002 * rng.normal(size=(n, axis.size))

    directory.mkdir()
    for name, axis, effects in (
        ("wide", np.arange(570.0, 1100.1, 2.0), (0.0, 1.0, 0.0)),
        ("narrow", np.arange(730.0, 1100.1, 2.5), (1.5, 0.9, 0.05)),
    ):
        values = measure(axis, *effects)
        rows = [["ID", *(repr(float(x)) for x in axis)]]
        rows += [[f"s{i}", *(repr(float(x)) for x in v)] for i, v in enumerate(values)]
        with open(directory / f"{name}.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
    with open(directory / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [["ID", "c1"], *([f"s{i}", repr(float(c))] for i, c in enumerate(conc[:, 1]))]
        )
    path = directory / "ranges.toml"
    path.write_text(
        'name = "ranges"\naxis_unit = "nm"\npairing = "id"\nid_column = "ID"\n'
        '[instruments.wide]\nspectra = "wide.csv"\n[instruments.narrow]\nspectra = "narrow.csv"\n'
        '[labels]\nfile = "labels.csv"\nunits = { c1 = "%" }\n'
    )
    return path


def test_instruments_on_different_ranges_run_classical_and_model_rows(tmp_path, tiny_export):
    toml = _ranges_dataset(tmp_path / "data")
    records = _bench(
        tmp_path / "bench",
        f"--config.dataset={toml}",
        "--config.pairs=('wide->narrow',)",
        "--config.methods=('mean_recentring','pds','model_frozen','model_lora')",
        "--config.ks=(0,5)",
        "--config.n_splits=1",
        "--config.n_draws=1",
        "--config.workers=1",
        f"--config.model.init={tiny_export}",
        "--config.model.few_shot.steps=3",
    )
    methods = {r["method"] for r in records}
    assert {"mean_recentring", "pds", "model_frozen", "model_lora"} <= methods
    assert all(np.isfinite(r["rmsep"]) for r in records)
    summary = (tmp_path / "bench" / "summary.md").read_text()
    assert "common range 730–1100 nm" in summary


def test_a_model_transfer_across_axes_saved_with_other_model_inputs_is_refused(
    tmp_path, tiny_export
):
    from configs import adapt

    dataset = dataset_file.read_dataset_file(_ranges_dataset(tmp_path / "data"))
    model = adapt.model_config().to_dict() | {"init": str(tiny_export)}
    transfer = CalibrationTransfer(method="model_frozen", model=model)
    workflow.fit_on_dataset(dataset, "wide", "narrow", "c1", transfer)
    transfer.save(tmp_path / "t")
    X = dataset.own("narrow").values
    np.testing.assert_array_equal(
        CalibrationTransfer.load(tmp_path / "t").predict(X), transfer.predict(X)
    )
    # Saved before the model read both instruments on the range they share: refused.
    info_path = tmp_path / "t" / "transfer.json"
    info = json.loads(info_path.read_text())
    del info["model_inputs"]
    info_path.write_text(json.dumps(info))
    with pytest.raises(ValueError, match="range they share.*fit it again"):
        CalibrationTransfer.load(tmp_path / "t")


@pytest.mark.parametrize("method", ["pds", "model_lora"])
def test_saved_transfer_predicts_like_the_fitted_one_to_the_last_bit(tmp_path, method, tiny_export):
    toml = write_csv_dataset(dataset_file.load("tablets"), tmp_path / "csv")
    workdir = tmp_path / "fit"
    command = [sys.executable, "-m", "caltransfer_jax.transfer"]
    fit = [
        f"--dataset={toml}",
        "--source=spec1",
        "--target=spec2",
        "--property=assay",
        f"--method={method}",
        "--k=8",
        f"--workdir={workdir}",
    ]
    if method == "model_lora":
        fit += [f"--init={tiny_export}", "--model.few_shot.steps=3"]
    subprocess.run([*command, "fit", *fit], cwd=REPO, check=True, capture_output=True)
    out = tmp_path / "pred.csv"
    subprocess.run(
        [
            *command,
            "predict",
            f"--transfer={workdir / 'transfer'}",
            f"--spectra={tmp_path / 'csv' / 'spec2.csv'}",
            "--id_column=ID",
            f"--out={out}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    with open(out) as f:
        rows = list(csv.DictReader(f))
    # The same transfer fitted in memory.
    from configs import adapt

    model = adapt.model_config().to_dict() | {"init": str(tiny_export)}
    transfer = CalibrationTransfer(method=method, model=model if method == "model_lora" else None)
    dataset = dataset_file.read_dataset_file(toml)
    workflow.fit_on_dataset(dataset, "spec1", "spec2", "assay", transfer, k=8)
    predicted, lower, upper = transfer.predict_interval(
        dataset.spectra.on_instrument("spec2").values
    )
    assert [r["id"] for r in rows] == dataset.spectra.on_instrument("spec2").sample_id.tolist()
    for column, expected in (("prediction", predicted), ("lower", lower), ("upper", upper)):
        np.testing.assert_array_equal([float(r[column]) for r in rows], expected)
    assert "interval basis" in (workdir / "report.md").read_text()


def test_predict_refuses_spectra_that_do_not_cover_the_transfer(tmp_path):
    dataset = dataset_file.load("corn")
    transfer = CalibrationTransfer(method="sbc")
    workflow.fit_on_dataset(dataset, "m5", "mp6", "oil", transfer, k=10)
    short = dataset.spectra.on_instrument("mp6").values[:3, :100]
    axis = dataset.spectra.axis[:100]
    with open(tmp_path / "short.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [[repr(float(a)) for a in axis], *([repr(float(v)) for v in row] for row in short)]
        )
    with pytest.raises(SpectraError, match=r"short.csv: the spectra do not cover the transfer"):
        workflow.predict_file(transfer, tmp_path / "short.csv", tmp_path / "p.csv", axis_unit="nm")
    assert not (tmp_path / "p.csv").exists()


def test_saving_refuses_an_existing_directory_and_loading_a_foreign_one(tmp_path):
    dataset = dataset_file.load("corn")
    transfer = CalibrationTransfer(method="mean_recentring")
    workflow.fit_on_dataset(dataset, "m5", "mp6", "oil", transfer)
    transfer.save(tmp_path / "t")
    with pytest.raises(FileExistsError, match="exists"):
        transfer.save(tmp_path / "t")
    with pytest.raises(ValueError, match="not a saved transfer"):
        CalibrationTransfer.load(tmp_path)


def test_methods_import_no_training_machinery_and_no_jax():
    code = (
        "import sys, caltransfer_jax.methods.registry, caltransfer_jax.benchmark.runner, "
        "caltransfer_jax.transfer.workflow, caltransfer_jax.data.dataset_file\n"
        "bad = [m for m in sys.modules if m.startswith(('caltransfer_jax.pretrain', 'jax', 'flax'))]\n"
        "import caltransfer_jax.methods.model.estimators\n"
        "bad += [m for m in sys.modules if m.startswith('caltransfer_jax.pretrain')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


@pytest.mark.parametrize("method", methods_registry.names(("classical",)))
def test_every_classical_method_saves_and_loads_to_the_last_bit(tmp_path, method):
    dataset = dataset_file.load("corn")
    transfer = CalibrationTransfer(method=method)
    workflow.fit_on_dataset(dataset, "m5", "mp6", "moisture", transfer, k=10)
    _assert_it_saves_and_loads_to_the_last_bit(transfer, tmp_path / "t", dataset, "mp6")


def _assert_it_saves_and_loads_to_the_last_bit(transfer, directory, dataset, target):
    transfer.save(directory)
    X = dataset.spectra.on_instrument(target).values
    for fitted, loaded in zip(
        transfer.predict_interval(X),
        CalibrationTransfer.load(directory).predict_interval(X),
        strict=True,
    ):
        np.testing.assert_array_equal(loaded, fitted)


class _WildOnThePool:
    """Semi-supervised di-PLS (+0.001, so not its duplicate), 10 label SDs off whenever it
    predicts more than 20 spectra at once (the 80 of the target pool; never the 12 transfer
    samples its cross-validation predicts): a member that passes cross-validation and fails on
    new spectra, as PFCE-SS did on tablet weight."""

    def __init__(self, master):
        from caltransfer_jax.methods.classical.dipls import SemiSupervisedDIPLS

        self.method = SemiSupervisedDIPLS(master)
        self.requires = self.method.requires

    def fit(self, X, y, **transfer):
        self.method.fit(X, y, **transfer)
        return self

    def predict(self, X):
        return self.method.predict(X) + 0.001 + (10.0 if len(X) > 20 else 0.0)


def test_auto_reports_the_members_it_left_out_for_straying_on_the_target_pool(
    tmp_path, monkeypatch
):
    import dataclasses

    from caltransfer_jax.methods.auto import AutoTransfer

    wild = dataclasses.replace(
        methods_registry.METHODS["dipls_semisupervised"],
        name="wild",
        build=lambda master, pls, context: _WildOnThePool(master),
    )
    six = ("dipls_semisupervised", "wild", "gct_pls", "augmented_pls", "sbc", "target_pls")
    auto = dataclasses.replace(
        methods_registry.METHODS["auto"],
        build=lambda master, pls, context: AutoTransfer(master, pls, context, candidates=six),
    )
    monkeypatch.setitem(methods_registry.METHODS, "wild", wild)
    monkeypatch.setitem(methods_registry.METHODS, "auto", auto)
    dataset = dataset_file.load("corn")
    transfer = CalibrationTransfer(method="auto")
    provenance = workflow.fit_on_dataset(dataset, "m5", "mp6", "moisture", transfer, k=12)
    ranked = sorted(transfer.choice_["cv_rmse"], key=transfer.choice_["cv_rmse"].get)
    assert "wild" in ranked[:3]  # in the better half by cross-validation, then left out
    assert transfer.choice_["strays"] == ["wild"] and "wild" not in transfer.choice_["members"]
    assert len(transfer.choice_["members"]) == 2
    assert "- left out of the mean: `wild` (" in workflow.report(transfer, provenance)
    _assert_it_saves_and_loads_to_the_last_bit(transfer, tmp_path / "t", dataset, "mp6")
    assert CalibrationTransfer.load(tmp_path / "t").choice_["strays"] == ["wild"]


def test_a_transfer_saved_before_choices_were_recorded_still_loads(tmp_path):
    dataset = dataset_file.load("corn")
    transfer = CalibrationTransfer(method="pds")
    workflow.fit_on_dataset(dataset, "m5", "mp6", "moisture", transfer, k=10)
    transfer.save(tmp_path / "t")
    info_path = tmp_path / "t" / "transfer.json"
    info = json.loads(info_path.read_text())
    assert info.pop("choice") is None
    info_path.write_text(json.dumps(info))
    loaded = CalibrationTransfer.load(tmp_path / "t")
    assert loaded.choice_ is None and loaded.fitted_method == "pds"
    X = dataset.spectra.on_instrument("mp6").values
    np.testing.assert_array_equal(loaded.predict(X), transfer.predict(X))


@pytest.mark.parametrize("candidate", ["model_dipls_semisupervised", "dipls_semisupervised"])
def test_auto_model_transfer_is_the_method_it_chose_and_saves_as_such(
    tmp_path, tiny_export, monkeypatch, candidate
):
    from caltransfer_jax.methods import auto
    from configs import adapt

    # One candidate, so that each kind of choice (a model row, a classical one) is exercised;
    # the choice among all candidates is covered by the benchmark's `auto_model` test.
    monkeypatch.setattr(auto, "MODEL_CANDIDATES", (candidate,))
    model = adapt.model_config().to_dict() | {"init": str(tiny_export)}
    transfer = CalibrationTransfer(method="auto_model", model=model)
    dataset = dataset_file.load("corn")
    provenance = workflow.fit_on_dataset(dataset, "m5", "mp6", "moisture", transfer, k=8)
    assert transfer.choice_["chosen"] == candidate
    assert set(transfer.choice_["cv_rmse"]) == {candidate}
    assert transfer.family_ == methods_registry.METHODS[candidate].family
    assert f"- chosen: `{candidate}`" in workflow.report(transfer, provenance)
    assert "cross-validated residuals on the 8 target transfer samples" in transfer.interval_basis_
    assert transfer.fitted_method == candidate
    _assert_it_saves_and_loads_to_the_last_bit(transfer, tmp_path / "t", dataset, "mp6")
    info = json.loads((tmp_path / "t" / "transfer.json").read_text())
    assert info["method"] == "auto_model" and info["choice"]["chosen"] == candidate


def test_an_auto_model_mean_of_model_and_classical_rows_saves_member_by_member(
    tmp_path, tiny_export, monkeypatch
):
    from caltransfer_jax.methods import auto
    from caltransfer_jax.methods.model import guard
    from configs import adapt

    # Three candidates, so that the mean is of two; these two rank above target-only PLS on 8
    # samples, so that the mean holds a model row and a classical one. The tiny export's row
    # would hand over to di-PLS on all 8 and so count once: its guard here only reports.
    candidates = ("model_dipls_semisupervised", "dipls_semisupervised", "target_pls")
    monkeypatch.setattr(auto, "MODEL_CANDIDATES", candidates)
    check = guard.check

    def reports_only(*args):
        report, _ = check(*args)
        return report | {"action": "reported only" if report["tripped"] else "none"}, None

    monkeypatch.setattr(guard, "check", reports_only)
    model = adapt.model_config().to_dict() | {"init": str(tiny_export)}
    transfer = CalibrationTransfer(method="auto_model", model=model)
    dataset = dataset_file.load("corn")
    provenance = workflow.fit_on_dataset(dataset, "m5", "mp6", "moisture", transfer, k=8)
    members = transfer.choice_["members"]
    assert sorted(members) == sorted(candidates[:2])
    assert transfer.family_ == "model" and transfer.fitted_method == "auto_model"
    report = workflow.report(transfer, provenance)
    assert "- chosen: the mean of `" in report
    # The model member's own guard is kept with the choice and reported.
    assert set(transfer.choice_["guards"]) == {candidates[0]}
    assert f"- guard of `{candidates[0]}` (" in report
    _assert_it_saves_and_loads_to_the_last_bit(transfer, tmp_path / "t", dataset, "mp6")
    saved = sorted(p.name for p in (tmp_path / "t" / "members").iterdir())
    assert saved == ["0", "1"]
    model_folder = tmp_path / "t" / "members" / str(members.index(candidates[0]))
    assert (model_folder / "head.skops").is_file() and (model_folder / "adapters").is_dir()
