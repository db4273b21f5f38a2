"""The benchmark's runner: every method under one leak-free protocol, in parallel jobs.

`run(config, workdir)` plans the jobs of a configuration (configs/benchmark.py) and writes to DIR: `results.jsonl` (one record per dataset, source, target, property, method, k,
selection, split and draw), `splits.json` and `transfer_sets.jsonl` (every sample id a method
was fitted on), `failures.jsonl` (fits a method could not make, with the error), `config.json`,
`summary.md` and PNG plots. See `caltransfer_jax.benchmark.protocol` for
what each method may see.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import itertools
import json
import multiprocessing
import os
import pathlib
import time

import numpy as np
from absl import logging
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from caltransfer_jax.benchmark import figures, report
from caltransfer_jax.benchmark.metrics import (
    conformal_quantile,
    cv_plus_interval,
    regression_metrics,
)
from caltransfer_jax.benchmark.protocol import (
    RECORD_KEY,
    PairedData,
    Split,
    TransferSet,
    check_no_leak,
    make_splits,
    make_transfer_sets,
)
from caltransfer_jax.data import dataset_file
from caltransfer_jax.data.dataset import Dataset
from caltransfer_jax.methods import registry as methods
from caltransfer_jax.methods.base import conformity_scores, cross_validate_transfer
from caltransfer_jax.methods.classical.pls import PLSRegressionCV
from caltransfer_jax.methods.classical.preprocessing import make_preprocessing
from caltransfer_jax.workdir import claim


@functools.cache
def load_dataset(spec: str) -> Dataset:
    """A bundled data set by name or a dataset file, once per process."""
    return dataset_file.load(spec)


@dataclasses.dataclass(frozen=True)
class Job:
    """One (split, instrument pair, property) with its transfer sets: the unit of parallel work."""

    dataset: str
    split: Split
    source: str
    target: str
    prop: str
    sets: tuple[TransferSet, ...]


def run_job(job: Job, settings: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """Fits and evaluates every method on one job; returns records, k = 10 predictions and the
    fits that failed."""
    with threadpool_limits(1):
        return _JobRun(job, settings).run()


class _JobRun:
    """One job's data, prepared once (preprocessing and label scaling learnt from the master
    pool only), and the records of every method fitted on it."""

    def __init__(self, job: Job, settings: dict):
        self.job, self.settings, self.split = job, settings, job.split
        self.dataset = dataset = load_dataset(job.dataset)
        # Classical methods: both instruments on one axis (the overlap of this pair).
        self.data = data = PairedData.from_parts(*dataset.pair(job.source, job.target)[:2])
        # The model reads each instrument from its own axis (over the range the two share).
        self.native = None
        if dataset.native is not None:
            self.native = PairedData.from_parts(dataset.own(job.source), dataset.own(job.target))
        self.pool, self.test = list(self.split.pool), list(self.split.test)
        check_no_leak(self.split, self.pool, f"{job.dataset} split {self.split.index} pool")
        # Preprocessing learns only from the master pool spectra.
        self.pre = pre = make_preprocessing(settings["preprocessing"]).fit(
            data.values("source", self.pool)
        )
        self.master_pool = pre.transform(data.values("source", self.pool))
        self.target_test = pre.transform(data.values("target", self.test))
        self.master_test = pre.transform(data.values("source", self.test))
        y_pool = data.labels(job.prop, self.pool)
        self.y_test = data.labels(job.prop, self.test)
        # Labels standardised on the master pool; metrics are reported in the original units.
        self.mu, self.sd = float(y_pool.mean()), float(y_pool.std())
        self.y_pool_std = (y_pool - self.mu) / self.sd
        self.pls = PLSRegressionCV(seed=self.split.index, **settings["pls"])
        self.master = clone(self.pls).fit(self.master_pool, self.y_pool_std)
        self.shared = {"X_target_unlabelled": pre.transform(data.values("target", self.pool))}
        if dataset.standards is not None:
            for key, name in (
                ("X_master_standards", job.source),
                ("X_target_standards", job.target),
            ):
                self.shared[key] = pre.transform(dataset.standards.on_instrument(name).values)
        self.context = {
            "settings": settings["model"],
            "wavenumber": data.source.wavenumber,
            "modality": dataset.spectra.modality,
            "seed": self.split.index,
        }
        if self.native is not None:
            self.context |= {
                "wavenumber": self.native.source.wavenumber,
                "target_wavenumber": self.native.target.wavenumber,
            }
        self.transfer_ids = {(t.k, t.selection, t.draw): list(t.ids) for t in job.sets}
        self.records, self.predictions, self.failures = [], [], []

    def run(self) -> tuple[list[dict], list[dict], list[dict]]:
        """The reference rows, then every method: zero-shot ones once, the others per set."""
        self._references()
        specs = methods.get(self.settings["methods"])
        for spec in specs:
            if spec.zero_shot:
                self._fit_and_record(spec, self.shared, 0, "none", 0)
        for tset in self.job.sets:
            label = f"{self.job.dataset} split {self.split.index} transfer set"
            check_no_leak(self.split, tset.ids, label)
            ids = list(tset.ids)
            arrays = {
                **self.shared,
                "X_master_transfer": self.pre.transform(self.data.values("source", ids)),
                "X_target_transfer": self.pre.transform(self.data.values("target", ids)),
                "y_transfer": (self.data.labels(self.job.prop, ids) - self.mu) / self.sd,
            }
            for spec in specs:
                if not spec.zero_shot:
                    self._fit_and_record(spec, arrays, tset.k, tset.selection, tset.draw)
        return self.records, self.predictions, self.failures

    def _references(self) -> None:
        """Master model on master spectra; full recalibration on the target pool."""
        alpha = self.settings["conformal_alpha"]
        predicted = self.master.predict(self.master_test)
        interval = _interval(predicted, self.master.cv_residuals_, None, alpha)
        self._record(methods.MASTER_ON_MASTER, "reference", 0, "none", 0, predicted, interval, 0.0)
        start = time.perf_counter()
        full = clone(self.pls).fit(self.shared["X_target_unlabelled"], self.y_pool_std)
        predicted = full.predict(self.target_test)
        interval = _interval(predicted, full.cv_residuals_, None, alpha)
        seconds = time.perf_counter() - start
        self._record(
            methods.FULL_RECALIBRATION,
            "reference",
            len(self.pool),
            "all",
            0,
            predicted,
            interval,
            seconds,
        )

    def _fit_and_record(self, spec, arrays, k, selection, draw) -> None:
        master, pls, context = self.master, self.pls, self.context
        method = spec.build(master, pls, context)
        if not method.requires <= set(arrays):
            return  # e.g. no transfer standards in this data set
        X_master, X_test = self.master_pool, self.target_test
        if spec.family == "model" and self.native is not None:
            # Own axes, unpreprocessed (the model standardises each spectrum itself).
            ids = self.transfer_ids.get((k, selection, draw), [])
            arrays = _native_arrays(self.native, arrays, self.pool, ids)
            X_master = self.native.values("source", self.pool)
            X_test = self.native.values("target", self.test)
        start = time.perf_counter()
        try:
            method.fit(X_master, self.y_pool_std, **arrays)
            predicted = method.predict(X_test)
        except (ValueError, np.linalg.LinAlgError) as error:
            # A method that cannot fit these data (e.g. EMSC on spectra unlike its reference)
            # is reported as failed, not allowed to stop the benchmark.
            job = self.job
            self.failures.append(
                {"dataset": self.dataset.name, "source": job.source, "target": job.target,
                 "property": job.prop,
                 "method": spec.name, "k": k, "selection": selection,
                 "split": self.split.index, "draw": draw, "error": str(error)}
            )  # fmt: skip
            logging.warning(
                "%s failed (%s->%s %s, k=%d, split %d): %s",
                spec.name, job.source, job.target, job.prop, k, self.split.index, error,
            )  # fmt: skip
            return
        seconds = time.perf_counter() - start
        residuals, _ = conformity_scores(method, master)
        cv = None
        if self.settings["intervals"] == "cv+" and k >= 2:
            chosen = getattr(method, "interval_builder", None)  # `auto`: see there
            build = chosen() if chosen else lambda: spec.build(master, pls, context)
            seed = (self.split.index, k, draw)
            # Model rows are refitted on what they read (their own axes, where those differ).
            cv = cross_validate_transfer(build, X_master, self.y_pool_std, arrays, X_test, seed)
        self._record(
            spec.name,
            spec.family,
            k,
            selection,
            draw,
            predicted,
            _interval(predicted, residuals, cv, self.settings["conformal_alpha"]),
            seconds,
            guard=getattr(method, "guard_", {}).get("action", ""),
            chosen=getattr(method, "chosen_", ""),
        )

    def _record(self, name, family, k, selection, draw, predicted_std, interval, seconds, **notes):
        """One record; `interval` from `_interval` (standardised units); `notes`: guard, chosen."""
        job, y_test = self.job, self.y_test
        predicted = np.asarray(predicted_std) * self.sd + self.mu
        lower, upper = (np.asarray(b) * self.sd + self.mu for b in interval.bounds)
        self.records.append(
            {
                "dataset": self.dataset.name,
                "source": job.source,
                "target": job.target,
                "property": job.prop,
                "family": family,
                "method": name,
                "k": k,
                "selection": selection,
                "split": self.split.index,
                "draw": draw,
                **regression_metrics(y_test, predicted),
                "coverage": float(np.mean((lower <= y_test) & (y_test <= upper))),
                "interval_half_width": (
                    float(np.mean((upper - lower) / 2))
                    if interval.half_width is None
                    else interval.half_width * self.sd
                ),
                "interval": interval.kind,
                "n_test": len(self.test),
                "fit_seconds": seconds,
                # Model rows: what their safety check did ("none", "auto_zero_shot", …).
                "guard": notes.get("guard", ""),
                # `auto`: the method it chose from the transfer samples.
                "chosen": notes.get("chosen", ""),
            }
        )
        if k == figures.SCATTER_K:
            keys = [key for key in RECORD_KEY if key != "k"]  # these are all k = SCATTER_K
            self.predictions.append(
                {
                    **{f: self.records[-1][f] for f in keys},
                    "y_true": y_test.tolist(),
                    "y_pred": predicted.tolist(),
                }
            )


@dataclasses.dataclass(frozen=True)
class _Interval:
    bounds: tuple[np.ndarray, np.ndarray]  # lower, upper per test sample (standardised units)
    half_width: float | None  # split: the half width (standardised units); CV+: None (varies)
    kind: str  # "split" or "cv+"


def _interval(predicted, residuals, cv, alpha: float) -> _Interval:
    """CV+ from (fold predictions, residuals) where given, else split-conformal on residuals."""
    if cv is not None:
        lower, upper = cv_plus_interval(*cv, alpha)
        return _Interval((lower, upper), None, "cv+")
    half_width = conformal_quantile(residuals, alpha)
    predicted = np.asarray(predicted)
    return _Interval((predicted - half_width, predicted + half_width), half_width, "split")


def _native_arrays(native: PairedData, arrays: dict, pool: list, ids: list) -> dict:
    """The transfer arrays a model method sees, on each instrument's own axis."""
    out = {"X_target_unlabelled": native.values("target", pool)}
    if "y_transfer" in arrays:
        out |= {
            "X_master_transfer": native.values("source", ids),
            "X_target_transfer": native.values("target", ids),
            "y_transfer": arrays["y_transfer"],
        }
    return out


def parse_pairs(pairs, instruments) -> list[tuple[str, str]]:
    """'source->target' strings as pairs of known instruments (empty: every ordered pair)."""
    if not pairs:
        return list(itertools.permutations(instruments, 2))
    out = []
    for text in pairs:
        parts = str(text).split("->")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"pair {text!r} is not of the form 'source->target', e.g. 'm5->mp6'")
        unknown = [name for name in parts if name not in instruments]
        if unknown:
            raise ValueError(f"pair {text!r}: unknown instrument(s) {unknown}; {list(instruments)}")
        out.append((parts[0], parts[1]))
    return out


def plan(config) -> tuple[list[Split], list[TransferSet], list[Job]]:
    """All splits, transfer sets and jobs of a benchmark configuration."""
    dataset = load_dataset(config.dataset)
    pairs = parse_pairs(config.pairs, dataset.instruments)
    properties = list(config.properties) or list(dataset.properties)
    unknown = [name for name in properties if name not in dataset.properties]
    if unknown:
        raise ValueError(f"unknown properties {unknown}; {dataset.name} has {dataset.properties}")
    # Samples without a reference value of a requested property are left out of every split.
    ids = dataset.labelled(properties)
    dropped = np.unique(dataset.spectra.sample_id).size - ids.size
    if dropped:
        logging.warning("%d sample(s) lack a value of %s and are not used", dropped, properties)
    if dataset.overlap:
        logging.info("%s: %s", dataset.name, dataset.overlap)
    splits = make_splits(
        ids,
        config.n_splits,
        config.test_fraction,
        config.seed,
        dataset.original_split if config.use_original_split else None,
    )
    pool_size = min(len(s.pool) for s in splits)
    ks = [k for k in config.ks if k <= pool_size]
    if len(ks) < len(config.ks):
        logging.warning(
            "k = %s skipped: more than the pool of %d samples",
            [k for k in config.ks if k > pool_size],
            pool_size,
        )
    all_sets, jobs = [], []
    for split in splits:
        # Kennard–Stone works on the master spectra, so the sets depend on the source instrument.
        for source in sorted({a for a, _ in pairs}):
            own = dataset.own(source)
            master_pool = PairedData.from_parts(own, own).values("source", split.pool)
            sets = make_transfer_sets(
                split, master_pool, ks, config.n_draws, config.kennard_stone, config.seed
            )
            all_sets.extend((source, s) for s in sets)
            for (a, b), prop in itertools.product(pairs, properties):
                if a == source:
                    jobs.append(Job(config.dataset, split, a, b, prop, tuple(sets)))
    return splits, all_sets, jobs


# How few-shot rows get their intervals: split-conformal on the method's scores
# (`methods.base.conformity_scores`), or CV+ over the transfer samples (refits per fold).
INTERVALS = ("split", "cv+")
# Fields that may differ when a benchmark is rerun into the same workdir.
OPERATIONAL_FIELDS = ("workers",)


def validate_config(config) -> None:
    """Refuses out-of-range or unknown settings, naming the field and what it accepts."""
    if not config.dataset:
        raise ValueError("dataset: name a data set (corn, tablets) or a dataset file (.toml)")
    bounds = (
        ("n_splits", config.n_splits >= 1, "at least 1"),
        ("n_draws", config.n_draws >= 0, "0 or more"),
        ("workers", config.workers >= 1, "at least 1"),
        ("test_fraction", 0 < config.test_fraction < 1, "between 0 and 1"),
        ("conformal_alpha", 0 < config.conformal_alpha < 1, "between 0 and 1"),
        ("ks", all(int(k) == k and k >= 0 for k in config.ks) and config.ks, "k ≥ 0, at least one"),
        ("pls.max_components", config.pls.max_components >= 1, "at least 1"),
        ("pls.n_folds", config.pls.n_folds >= 2, "at least 2"),
        ("pls.rule", config.pls.rule in ("min", "onesigma"), "'min' or 'onesigma'"),
        ("methods", bool(config.methods), f"one or more of {list(methods.METHODS)}"),
        ("intervals", config.intervals in INTERVALS, f"one of {list(INTERVALS)}"),
    )
    for field, ok, accepted in bounds:
        if not ok:
            raise ValueError(f"{field} = {config[field.split('.')[0]]!r}: must be {accepted}")
    if any(k > 0 for k in config.ks) and not (config.n_draws or config.kennard_stone):
        raise ValueError(
            "n_draws = 0 and kennard_stone = False leave no transfer samples for k > 0"
        )
    try:
        specs = methods.get(config.methods)
    except KeyError as error:
        raise ValueError(f"methods: {error.args[0]}") from None
    try:
        make_preprocessing(config.preprocessing)
    except ValueError as error:
        raise ValueError(f"preprocessing: {error}") from None
    if any(spec.family == "model" for spec in specs) and not config.model.init:
        raise ValueError("model.init: model methods need a pretraining export directory")


def run(config, workdir: str) -> list[dict]:
    """Runs the benchmark described by `config`, writing every output into `workdir`."""
    validate_config(config)
    dataset = load_dataset(config.dataset)
    if any(spec.family == "model" for spec in methods.get(config.methods)):
        # Imported on use: the classical path must not load JAX.
        from caltransfer_jax.models.export import check_unseen

        check_unseen(config.model.init, dataset.name)
        if dataset.native is not None and "auto_model" in config.methods:
            raise ValueError(
                f"methods: auto_model needs both instruments on one axis; {dataset.name}'s "
                "instruments have their own (name `auto` and the model rows instead)"
            )
    splits, sets, jobs = plan(config)
    identity = {k: v for k, v in config.to_dict().items() if k not in OPERATIONAL_FIELDS}
    workdir = claim(workdir, "benchmark", identity)
    settings = {
        "preprocessing": config.preprocessing,
        "pls": dict(config.pls),
        "conformal_alpha": config.conformal_alpha,
        "methods": list(config.methods),
        "model": config.model.to_dict(),
        "intervals": config.intervals,
    }
    uses_model = any(spec.family == "model" for spec in methods.get(config.methods))
    # JAX is not fork-safe: workers that run the model start fresh (spawn).
    context = multiprocessing.get_context("spawn") if uses_model else None
    records, predictions, failures = [], [], []
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=config.workers, mp_context=context
    ) as pool:
        futures = [pool.submit(run_job, job, settings) for job in jobs]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            job_records, job_predictions, job_failures = future.result()
            records.extend(job_records)
            predictions.extend(job_predictions)
            failures.extend(job_failures)
            elapsed = time.perf_counter() - start
            logging.info(
                "%d/%d jobs, %d records, %.0f s elapsed, ETA %.0f s",
                done,
                len(jobs),
                len(records),
                elapsed,
                elapsed / done * (len(jobs) - done),
            )
    records.sort(key=lambda r: tuple(r[f] for f in RECORD_KEY))
    _write(workdir / "config.json", config.to_json(indent=2))
    _write(workdir / "splits.json", json.dumps([dataclasses.asdict(s) for s in splits], indent=1))
    _write(
        workdir / "transfer_sets.jsonl",
        "".join(json.dumps({"source": src, **dataclasses.asdict(s)}) + "\n" for src, s in sets),
    )
    _write(workdir / "results.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    _write(workdir / "predictions_k10.jsonl", "".join(json.dumps(p) + "\n" for p in predictions))
    _write(workdir / "failures.jsonl", "".join(json.dumps(f) + "\n" for f in failures))
    notes = [_axes_note(dataset, parse_pairs(config.pairs, dataset.instruments))]
    report.write_report(
        records,
        workdir,
        title=f"Transfer benchmark: {dataset.name}",
        predictions=predictions,
        notes="\n\n".join(n for n in (*notes, _failures_note(failures)) if n),
    )
    logging.info(
        "wrote %d records to %s in %.0f s", len(records), workdir, time.perf_counter() - start
    )
    return records


def _failures_note(failures: list[dict]) -> str:
    """The report's paragraph on fits that failed ('' if none): per method, how many and why."""
    by_method: dict[str, list[str]] = {}
    for failure in failures:
        by_method.setdefault(failure["method"], []).append(failure["error"])
    if not by_method:
        return ""
    parts = [
        f"`{name}` {len(errors)} (first: {errors[0]})" for name, errors in sorted(by_method.items())
    ]
    return (
        "**Failed fits** (left out of the tables, so those methods' cells average their other "
        f"fits; `failures.jsonl` lists each): {'; '.join(parts)}."
    )


def _axes_note(dataset: Dataset, pairs) -> str:
    """The report's sentence on the axes of the pairs' classical methods ('' if all share one)."""
    sentences = dict.fromkeys(dataset.pair(a, b)[2] for a, b in pairs)  # in order, once each
    sentences.pop("", None)
    if not sentences:
        return ""
    return (
        f"Axes: {'; '.join(sentences)}; model rows read each instrument from its own axis, "
        "over the range the two share."
    )


def _write(path: pathlib.Path, text: str) -> None:
    """Writes through a temporary file so an interrupted run leaves no half-written output."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
