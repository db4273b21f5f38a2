r"""Fit a calibration transfer and keep it; predict new target spectra with it.

    python -m caltransfer_jax.transfer fit --dataset=PATH.toml --source=S --target=T \
        --property=P --method=NAME [--k=K] [--init=EXPORT [--model.FIELD=VALUE]] \
        [--tolerance=RMSEP] --workdir=DIR
    python -m caltransfer_jax.transfer predict --transfer=DIR/transfer --spectra=FILE.csv \
        --out=PRED.csv

`fit` writes `DIR/transfer/` (the saved transfer, see `transfer.estimator`) and
`DIR/report.md`; with `--tolerance`, also the learning curve estimated from the transfer samples
and the k that reaches that RMSEP (in the report and `DIR/learning_curve.png`). `predict` reads
a wide CSV file of target spectra (header: axis positions in the unit the transfer was fitted in
unless `--axis_unit` says otherwise) and writes one row per spectrum: id, prediction, lower,
upper.
"""

from __future__ import annotations

import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

from caltransfer_jax import runtime
from caltransfer_jax.data import dataset_file
from caltransfer_jax.data.readers import CsvFormat
from caltransfer_jax.methods import registry
from caltransfer_jax.transfer import workflow
from caltransfer_jax.transfer.estimator import CalibrationTransfer, read_info
from caltransfer_jax.workdir import claim
from configs import adapt

_DATASET = flags.DEFINE_string("dataset", None, "fit: bundled name or dataset file (.toml).")
_SOURCE = flags.DEFINE_string("source", None, "fit: master instrument.")
_TARGET = flags.DEFINE_string("target", None, "fit: target instrument.")
_PROPERTY = flags.DEFINE_string("property", None, "fit: property to calibrate.")
_METHOD = flags.DEFINE_enum(
    "method", "dipls_semisupervised", registry.names(("classical", "model")), "fit: method."
)
_K = flags.DEFINE_integer("k", None, "fit: transfer samples by Kennard–Stone (default: all).")
_PREPROCESSING = flags.DEFINE_string("preprocessing", "none", "fit: classical preprocessing.")
_INIT = flags.DEFINE_string("init", None, "fit: pretrained export for model methods.")
_MODEL = config_flags.DEFINE_config_dict(
    "model",
    adapt.model_config(),
    "fit: adaptation settings of model methods (configs/adapt.py), e.g. --model.few_shot.steps=200",
)
_ALPHA = flags.DEFINE_float("alpha", 0.1, "fit: interval miscoverage (0.1: 90 % intervals).")
_SEED = flags.DEFINE_integer("seed", 0, "fit: seed of CV folds and adaptation.")
_TOLERANCE = flags.DEFINE_float(
    "tolerance", None, "fit: RMSEP you need (property units): estimate the k that reaches it."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "fit: output directory (must be new or empty).")
_TRANSFER = flags.DEFINE_string("transfer", None, "predict: a saved transfer directory.")
_SPECTRA = flags.DEFINE_string("spectra", None, "predict: wide CSV file of target spectra.")
_OUT = flags.DEFINE_string("out", None, "predict: CSV file to write.")
_AXIS_UNIT = flags.DEFINE_string("axis_unit", None, "predict: axis unit of --spectra.")
_DELIMITER = flags.DEFINE_string("delimiter", ",", "predict: field delimiter of --spectra.")
_DECIMAL = flags.DEFINE_string("decimal", ".", "predict: decimal mark of --spectra.")
_ID_COLUMN = flags.DEFINE_string("id_column", None, "predict: sample id column of --spectra.")

_NEEDS = {
    "fit": ("dataset", "source", "target", "property", "workdir"),
    "predict": ("transfer", "spectra", "out"),
}


def fit() -> None:
    workdir = pathlib.Path(_WORKDIR.value)
    if workdir.exists() and any(workdir.iterdir()):
        raise app.UsageError(f"--workdir {workdir} is not empty; choose a new directory")
    claim(workdir, "transfer", None, write=False)  # writable, and no other run's
    spec = registry.METHODS[_METHOD.value]
    if _TOLERANCE.value is not None and (
        not _TOLERANCE.value > 0 or spec.family != "classical" or spec.zero_shot
    ):
        raise app.UsageError(
            "--tolerance needs a positive RMSEP and a classical few-shot --method; got "
            f"{_TOLERANCE.value} with {_METHOD.value}"
        )
    dataset = dataset_file.load(_DATASET.value)
    model = None
    if spec.family == "model":
        if not _INIT.value:
            raise app.UsageError(
                f"--method={_METHOD.value} needs --init=EXPORT (a pretraining export)"
            )
        model = _MODEL.value.to_dict() | {"init": _INIT.value}
    transfer = CalibrationTransfer(
        method=_METHOD.value,
        preprocessing=_PREPROCESSING.value,
        model=model,
        alpha=_ALPHA.value,
        seed=_SEED.value,
    )
    provenance = workflow.fit_on_dataset(
        dataset,
        _SOURCE.value,
        _TARGET.value,
        _PROPERTY.value,
        transfer,
        _K.value,
        _TOLERANCE.value,
    )
    provenance["dataset_spec"] = str(_DATASET.value)
    text = workflow.report(transfer, provenance)  # before anything is written
    claim(workdir, "transfer", None)
    transfer.save(workdir / "transfer", provenance)
    (workdir / "report.md").write_text(text)
    if provenance["learning_curve"]:
        workflow.plot_learning_curve(provenance, workdir / "learning_curve.png")
    logging.info("saved the transfer to %s", workdir / "transfer")


def predict() -> None:
    directory = pathlib.Path(_TRANSFER.value)
    info = read_info(directory)
    transfer = CalibrationTransfer.load(directory)
    unit = _AXIS_UNIT.value or info["provenance"].get("axis_unit", "nm")
    predicted = workflow.predict_file(
        transfer,
        _SPECTRA.value,
        _OUT.value,
        axis_unit=unit,
        csv_format=CsvFormat(_DELIMITER.value, _DECIMAL.value),
        id_column=_ID_COLUMN.value,
    )
    logging.info("wrote %d predictions to %s", len(predicted), _OUT.value)


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in _NEEDS:
        raise app.UsageError(f"give one command, fit or predict; got {argv[1:]}")
    command = argv[1]
    runtime.configure()
    missing = [name for name in _NEEDS[command] if flags.FLAGS[name].value is None]
    if missing:
        raise app.UsageError(f"{command} needs --{', --'.join(missing)}")
    {"fit": fit, "predict": predict}[command]()


if __name__ == "__main__":
    app.run(main)
