r"""What separates two instruments: the paired difference decomposed, real and simulated.

    python -m caltransfer_jax.diagnose --dataset=corn --workdir=DIR
    python -m caltransfer_jax.diagnose --dataset=tablets --workdir=DIR --simulated_seeds=0,1

For every instrument pair (master A, target B, the same samples on one axis), the difference
D = B − A is split, in this order, into parts that add up to D:

  mean            the average difference spectrum (what mean re-centring removes);
  offset+scale    per sample, an offset and a multiple of the sample's own master spectrum
                  (least squares on [1, A_i] of what the mean leaves);
  systematic      what one linear map of the master spectrum predicts of the rest (scikit-learn
                  RidgeCV, ridge by leave-one-out, predicted by 10-fold CV so it
                  counts only what generalises to new samples — what DS/PDS can learn);
  sample-specific the remainder: differences no shared map predicts.

For each part: its RMS (absorbance units), its share of ‖D‖², and — the point — its effect on a
prediction: the RMS of (part · b) in units of the property's SD, b the master PLS regression
vector (components by CV) of each property. The no-correction error is the same for D itself.
Also the noise σ of each instrument (from second differences, per wavelength). The same
decomposition runs on paired spectra of the simulator's NIR instruments (no properties there:
RMS and shares only). Writes `diagnosis.json`, `diagnosis.md` and one plot per pair.
"""

from __future__ import annotations

import itertools
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from absl import app, flags, logging
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict

from caltransfer_jax.data import dataset_file
from caltransfer_jax.methods.classical.pls import PLSRegressionCV
from caltransfer_jax.simulate.stats import pair_statistics, simulated_pairs
from caltransfer_jax.workdir import claim

PARTS = ("mean", "offset+scale", "systematic", "sample-specific")
_RIDGES = np.logspace(-6, 2, 17)


def decompose(master: np.ndarray, target: np.ndarray, folds: int = 10) -> dict[str, np.ndarray]:
    """The parts of D = target − master (n, p each; rows the same samples), summing to D."""
    diff = target - master
    n = diff.shape[0]
    parts = {"mean": np.repeat(diff.mean(0, keepdims=True), n, axis=0)}
    rest = diff - parts["mean"]
    design = np.stack([np.ones_like(master), master], axis=-1)  # (n, p, 2)
    coef = np.stack(
        [np.linalg.lstsq(d, r, rcond=None)[0] for d, r in zip(design, rest, strict=True)]
    )
    parts["offset+scale"] = np.einsum("npk,nk->np", design, coef)
    rest = rest - parts["offset+scale"]
    parts["systematic"] = _cv_ridge_prediction(master, rest, folds)
    parts["sample-specific"] = rest - parts["systematic"]
    return parts


def _cv_ridge_prediction(x: np.ndarray, y: np.ndarray, folds: int) -> np.ndarray:
    """K-fold cross-validated predictions of y (n, p) from x by one ridge map (ridge strength
    by leave-one-out inside each training fold, on a grid relative to the data's scale)."""
    scale = np.linalg.norm(x - x.mean(0), ord=2) ** 2
    ridge = RidgeCV(alphas=_RIDGES * scale)
    return cross_val_predict(ridge, x, y, cv=KFold(folds, shuffle=True, random_state=0))


def noise_spectrum(x: np.ndarray) -> np.ndarray:
    """Robust white-noise σ per wavelength (second differences along the axis, MAD over rows)."""
    d2 = np.diff(x, n=2, axis=1)
    mad = np.median(np.abs(d2 - np.median(d2, axis=0)), axis=0)
    return np.pad(1.4826 * mad / np.sqrt(6.0), 1, mode="edge")


def summarise(parts: dict[str, np.ndarray], vectors: dict[str, np.ndarray]) -> dict:
    """RMS, share of ‖D‖² and prediction effect (property SD units) of each part and of D."""
    diff = sum(parts.values())
    total = float(np.sum(diff**2))
    out = {}
    for name, part in {**parts, "total": diff}.items():
        out[name] = {
            "rms": float(np.sqrt(np.mean(part**2))),
            "share": float(np.sum(part**2) / total),
            **{f"effect_{p}": float(np.sqrt(np.mean((part @ b) ** 2))) for p, b in vectors.items()},
        }
    return out


def regression_vectors(master: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Master PLS regression vectors (standardised labels, components by CV) per property."""
    out = {}
    for name, y in labels.items():
        model = PLSRegressionCV(seed=0).fit(master, (y - y.mean()) / y.std())
        out[name] = model.coef_
    return out


def diagnose_dataset(spec: str, workdir: pathlib.Path) -> dict:
    """Decomposes every instrument pair of a data set; writes one plot per pair."""
    dataset = dataset_file.load(spec)
    results = {}
    for a, b in itertools.permutations(dataset.instruments, 2):
        master, target, _ = dataset.pair(a, b)
        axis = master.axis
        labels = {p: master.label(p) for p in dataset.properties}
        vectors = regression_vectors(master.values, labels)
        parts = decompose(master.values, target.values)
        summary = summarise(parts, vectors)
        summary["noise"] = {
            a: float(np.median(noise_spectrum(master.values))),
            b: float(np.median(noise_spectrum(target.values))),
        }
        results[f"{dataset.name} {a}→{b}"] = summary
        _plot(
            parts,
            vectors,
            axis,
            f"{dataset.name} {a} → {b}",
            workdir / f"{dataset.name}_{a}_{b}.png",
        )
    return results


def diagnose_simulator(seeds, samples: int) -> dict:
    """The same shares for the simulator's NIR instrument pairs (medians over pairs)."""
    shares = {name: [] for name in (*PARTS, "total_rms")}
    for seed in seeds:
        for pair in simulated_pairs(seed, samples):
            if pair_statistics(pair) is None or pair.a.shape[0] < 20:
                continue
            lo, hi = max(pair.axis_a[0], pair.axis_b[0]), min(pair.axis_a[-1], pair.axis_b[-1])
            grid = np.arange(np.ceil(lo / 2.0) * 2.0, hi + 1e-9, 2.0)
            a = np.stack([np.interp(grid, pair.axis_a, r) for r in pair.a])
            b = np.stack([np.interp(grid, pair.axis_b, r) for r in pair.b])
            summary = summarise(decompose(a, b), {})
            for name in PARTS:
                shares[name].append(summary[name]["share"])
            shares["total_rms"].append(summary["total"]["rms"])
    return {
        name: {"median": float(np.median(v)), "p5": float(np.percentile(v, 5)),
               "p95": float(np.percentile(v, 95)), "pairs": len(v)}
        for name, v in shares.items() if v
    }  # fmt: skip


def _plot(parts, vectors, axis, title: str, path: pathlib.Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    order = np.argsort(axis)
    for name, part in parts.items():
        top.plot(axis[order], np.sqrt(np.mean(part**2, axis=0))[order], label=name, lw=1.4)
    top.set_yscale("log")  # the parts differ by two orders of magnitude
    top.set_ylabel("RMS over samples (AU)")
    top.legend(loc="upper left", frameon=False)
    top.set_title(f"{title}: parts of the paired difference")
    for name, b in vectors.items():
        contribution = np.mean((parts["sample-specific"] * b) ** 2, axis=0)
        bottom.plot(axis[order], contribution[order] / contribution.sum(), label=name, lw=1.2)
    bottom.set_ylabel("share of the sample-specific\nprediction error")
    bottom.set_xlabel("wavelength")
    bottom.legend(loc="upper left", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(real: dict, simulated: dict) -> str:
    """The result tables."""
    lines = ["# What separates the instruments", ""]
    for pair, summary in real.items():
        props = [k[len("effect_") :] for k in summary["total"] if k.startswith("effect_")]
        lines += [f"## {pair}", "", "| part | RMS (AU) | share of ‖D‖² | "
                  + " | ".join(f"effect on {p} (SD)" for p in props) + " |",
                  "|---" * (3 + len(props)) + "|"]  # fmt: skip
        for name in (*PARTS, "total"):
            row = summary[name]
            cells = [f"{row['rms']:.3g}", f"{row['share']:.3f}"]
            cells += [f"{row[f'effect_{p}']:.3f}" for p in props]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        noise = ", ".join(f"{k} {v:.2g}" for k, v in summary["noise"].items())
        lines += ["", f"Noise σ (median over wavelengths): {noise} AU.", ""]
    if simulated:
        lines += ["## Simulator (NIR instrument pairs)", "", "| part | share p5 | median | p95 |",
                  "|---|---|---|---|"]  # fmt: skip
        for name in PARTS:
            s = simulated[name]
            lines.append(f"| {name} | {s['p5']:.3f} | {s['median']:.3f} | {s['p95']:.3f} |")
        lines += ["", f"{simulated[PARTS[0]]['pairs']} simulated instrument pairs.", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    workdir = claim(args.workdir, "diagnose", None)
    real = {}
    for spec in args.dataset:
        real |= diagnose_dataset(spec, workdir)
    simulated = diagnose_simulator([int(s) for s in args.simulated_seeds], args.samples)
    (workdir / "diagnosis.json").write_text(
        json.dumps({"real": real, "simulated": simulated}, indent=1)
    )
    (workdir / "diagnosis.md").write_text(markdown(real, simulated))
    logging.info("wrote %s", workdir / "diagnosis.md")


if __name__ == "__main__":
    flags.DEFINE_list("dataset", ["corn", "tablets"], "Bundled names or dataset files.")
    flags.DEFINE_string("workdir", None, "Where to write the tables and plots.", required=True)
    flags.DEFINE_list("simulated_seeds", ["0"], "Simulator seeds (instrument sets); empty: none.")
    flags.DEFINE_integer("samples", 600, "Simulated NIR samples per seed.")
    app.run(main)
