r"""Adaptation entry point: the pretrained export transferred to one target instrument.

    python -m caltransfer_jax.adapt --config=configs/adapt.py:lora --config.init=EXPORT --workdir=DIR
    python -m caltransfer_jax.adapt --config=configs/adapt.py:ttt --config.init=EXPORT --workdir=DIR

Runs one transfer under the benchmark's protocol (`caltransfer_jax.benchmark.protocol`): split
`config.split` of the data set into pool and test, the master PLS head on the export's features
of the labelled master pool (labels standardised on it), then LoRA few-shot on k Kennard–Stone
transfer samples (`lora`) or test-time training on the unlabelled target pool (`ttt`). Writes to
DIR: `adapters/` + `adapter.json` (adapter-only orbax checkpoint with rank, alpha, targets and
paths), `result.json` (metrics on the test set, split-conformal interval, parameter counts,
adaptation log and wall time) and `config.json`.
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from caltransfer_jax import runtime
from caltransfer_jax.benchmark.metrics import (
    conformal_quantile,
    interval_coverage,
    regression_metrics,
)
from caltransfer_jax.benchmark.protocol import PairedData, check_no_leak, make_splits
from caltransfer_jax.data import dataset_file
from caltransfer_jax.methods.classical.selection import kennard_stone
from caltransfer_jax.methods.model.adaptable import FEATURES
from caltransfer_jax.methods.model.estimators import ModelLoRA, ModelTTT
from caltransfer_jax.methods.model.lora import save_adapters
from caltransfer_jax.models.export import check_unseen
from caltransfer_jax.workdir import claim

MODES = ("lora", "ttt")


def validate_config(config) -> None:
    """Refuses unknown or out-of-range settings, naming the field and what it accepts."""
    checks = (
        ("mode", config.mode in MODES, f"one of {list(MODES)}"),
        ("init", bool(config.init), "a pretraining export directory"),
        ("features", config.features in FEATURES, f"one of {list(FEATURES)}"),
        ("split", config.split >= 0, "0 or more"),
        ("test_fraction", 0 < config.test_fraction < 1, "between 0 and 1"),
        ("k", config.mode != "lora" or config.k >= 2, "at least 2 for lora"),
        ("conformal_alpha", 0 < config.conformal_alpha < 1, "between 0 and 1"),
        ("lora.rank", config.lora.rank >= 1, "at least 1"),
        ("ttt.steps", config.ttt.steps >= 1, "at least 1"),
        ("few_shot.steps", config.few_shot.steps >= 1, "at least 1"),
        ("few_shot.eval_every", config.few_shot.eval_every >= 1, "at least 1"),
        ("few_shot.n_folds", config.few_shot.n_folds >= 2, "at least 2"),
    )
    for field, ok, accepted in checks:
        if not ok:
            value = config
            for part in field.split("."):
                value = value[part]
            raise ValueError(f"{field} = {value!r}: must be {accepted}")


def adapt(config, workdir: str | pathlib.Path) -> dict:
    """Runs one adaptation described by `config` (configs/adapt.py); returns the result."""
    validate_config(config)
    dataset = dataset_file.load(config.dataset)
    check_unseen(config.init, dataset.name)
    workdir = claim(workdir, "adapt", config.to_dict())
    splits = make_splits(
        dataset.spectra.sample_id, config.split + 1, config.test_fraction, config.seed
    )
    split = splits[config.split]
    data = PairedData.from_parts(*dataset.pair(config.source, config.target)[:2])
    pool, test = list(split.pool), list(split.test)
    y_pool = data.labels(config.property, pool)
    mu, sd = float(y_pool.mean()), float(y_pool.std())
    settings = {
        k: config[k].to_dict() if hasattr(config[k], "to_dict") else config[k]
        for k in ("init", "features", "lora", "head", "ttt", "few_shot")
    }
    context = {
        "settings": settings,
        "wavenumber": data.source.wavenumber,
        "modality": dataset.spectra.modality,
        "seed": config.seed,
    }
    if config.mode == "lora":
        master_pool = data.values("source", pool)
        ids = [pool[i] for i in kennard_stone(master_pool, config.k)]
        check_no_leak(split, ids, "transfer set")
        method = ModelLoRA(**context)
        arrays = {
            "X_master_transfer": data.values("source", ids),
            "X_target_transfer": data.values("target", ids),
            "y_transfer": (data.labels(config.property, ids) - mu) / sd,
        }
    else:
        ids = []
        method = ModelTTT(**context)
        arrays = {"X_target_unlabelled": data.values("target", pool)}
    check_no_leak(split, pool, "pool")
    start = time.perf_counter()
    method.fit(data.values("source", pool), (y_pool - mu) / sd, **arrays)
    seconds = time.perf_counter() - start
    predicted = method.predict(data.values("target", test)) * sd + mu
    y_test = data.labels(config.property, test)
    scores = getattr(method, "conformity_scores_", method.model_.cv_residuals_)
    half_width = conformal_quantile(np.asarray(scores) * sd, config.conformal_alpha)
    model = method.adaptable_
    result = {
        "mode": config.mode,
        "k": len(ids),
        "transfer_ids": ids,
        **regression_metrics(y_test, predicted),
        "coverage": interval_coverage(y_test, predicted, half_width),
        "interval_half_width": half_width,
        "head_components": int(method.model_.n_components_),
        "param_counts": model.param_counts,
        "adapted_layers": model.paths,
        "log": method.log_,
        "fit_seconds_including_compile": seconds,
    }
    logging.info(
        "trainable (adapter) parameters %d of %d total (%.2f %%)",
        model.param_counts["adapter"],
        sum(model.param_counts.values()),
        100 * model.param_counts["adapter"] / sum(model.param_counts.values()),
    )
    metadata = {
        "rank": config.lora.rank,
        "alpha": config.lora.alpha,
        "targets": config.lora.targets,
        "paths": model.paths,
        "init": str(pathlib.Path(config.init).resolve()),
        "features": config.features,
        "mode": config.mode,
        "source": config.source,
        "target": config.target,
        "property": config.property,
    }
    save_adapters(workdir / "adapters", method.adapters_, metadata)
    (workdir / "config.json").write_text(config.to_json(indent=2))
    (workdir / "result.json").write_text(json.dumps(result, indent=2, default=float))
    logging.info("R² %.3f, RMSEP %.4f, fit %.1f s", result["r2"], result["rmsep"], seconds)
    return result


_CONFIG = config_flags.DEFINE_config_file("config", None, "Adaptation configuration file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for adapters and results.")


flags.register_validator("config", runtime.config_validator(validate_config))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.configure()
    adapt(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
