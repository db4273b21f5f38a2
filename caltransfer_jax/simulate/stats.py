r"""Statistics of paired multi-instrument NIR spectra, real and simulated, side by side.

    python -m caltransfer_jax.simulate.stats --data_dir=../shared/data --seeds=0,1,2

prints a markdown table: for each real instrument pair (corn m5/mp5/mp6, the two IDRC-2002 tablet
instruments) the median over samples of each statistic, and for the simulator its percentiles
over all simulated sample pairs (NIR samples measured on 4 instruments each; every pair of
instruments whose ranges overlap by ≥ 300 nm). The same code computes both.

Statistics, all on a common 2 nm grid over the overlap of the pair's ranges:
  level, range: mean and peak-to-peak absorbance of a spectrum;
  band FWHM: widths of absorption bands from the zero crossings of the second derivative
    (Savitzky–Golay, 11 points) around its minima: FWHM = 1.177 × zero-crossing distance;
  noise: robust σ of white noise from the second difference, 1.4826·MAD(Δ²A)/√6, on the
    instrument's native points; noise (worst): the same in consecutive windows of 25 points, 95th
    percentile (the noisy ends of a range);
  offset, slope: mean and linear slope (per 1000 nm) of the paired difference B - A;
  shift: lag of the maximum cross-correlation of the first derivatives of A and B (parabolic
    refinement), in nm;
  RMS diff: root mean square of B - A; RMS shape diff: the same after removing offset + slope.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib

import numpy as np
from absl import app, flags
from scipy.signal import savgol_filter

from caltransfer_jax.simulate.corpus import Simulator, SimulatorConfig, split_views

STATS = (
    "level",
    "range",
    "band_fwhm",
    "noise",
    "noise_worst",
    "offset",
    "slope",
    "shift",
    "rms_diff",
    "rms_shape_diff",
)
_LABELS = {
    "level": "level: mean absorbance (AU)",
    "range": "range: peak-to-peak absorbance (AU)",
    "band_fwhm": "band FWHM (nm)",
    "noise": "noise σ (AU)",
    "noise_worst": "noise σ, worst 5 % of windows (AU)",
    "offset": "|offset| B - A (AU)",
    "slope": "|slope| of B - A (AU / 1000 nm)",
    "shift": "|axis shift| B vs A (nm)",
    "rms_diff": "RMS difference B - A (AU)",
    "rms_shape_diff": "RMS difference after offset + slope (AU)",
}
STEP_NM = 2.0
MIN_OVERLAP_NM = 300.0


@dataclasses.dataclass(frozen=True)
class Pair:
    """Paired spectra of the same samples on instruments A and B.

    Attributes:
      name: "A / B".
      axis_a, axis_b: native axes in nm (ascending), (p_a,) and (p_b,).
      a, b: (n, p_a) and (n, p_b) absorbance; row i is the same sample.
    """

    name: str
    axis_a: np.ndarray
    axis_b: np.ndarray
    a: np.ndarray
    b: np.ndarray


def read_wide_csv(path: pathlib.Path, skip_columns: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(axis (p,), values (n, p)) from a CSV with a header row of wavelengths."""
    with open(path) as f:
        header = f.readline().strip().split(",")[skip_columns:]
    values = np.genfromtxt(path, delimiter=",", skip_header=1)[:, skip_columns:]
    if values.ndim != 2 or not np.all(np.isfinite(values)):
        raise ValueError(f"{path}: expected a finite numeric table after the header")
    return np.array(header, dtype=float), values


def real_pairs(data_dir: pathlib.Path) -> list[Pair]:
    """Corn m5/mp5/mp6 pairs and the tablet instrument pair from the development data."""
    corn = {n: read_wide_csv(data_dir / "corn" / f"{n}spec.csv") for n in ("m5", "mp5", "mp6")}
    pairs = [
        Pair(f"corn {a} / {b}", corn[a][0], corn[b][0], corn[a][1], corn[b][1])
        for a, b in itertools.combinations(corn, 2)
    ]
    tab = [
        read_wide_csv(data_dir / "idrc2002_tablets" / f"Pharma_Instrument{i}.csv", 4)
        for i in (1, 2)
    ]
    pairs.append(Pair("tablets 1 / 2", tab[0][0], tab[1][0], tab[0][1], tab[1][1]))
    return pairs


def simulated_pairs(seed: int, num_samples: int, views: int = 4) -> list[Pair]:
    """Paired NIR spectra from the simulator, one `Pair` per instrument pair with samples."""
    config = SimulatorConfig(seed=seed, modality_weights=(1.0, 0.0, 0.0), views_per_sample=views)
    sim = Simulator(config)
    buckets: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for rec in sim.generate(range(num_samples)):
        values = split_views(rec)[0]
        order = np.argsort(rec["instrument"])
        for i, j in itertools.combinations(order, 2):
            key = (int(rec["instrument"][i]), int(rec["instrument"][j]))
            buckets.setdefault(key, []).append((values[i], values[j]))
    pairs = []
    for (i, j), rows in sorted(buckets.items()):
        a, b = sim.instruments[i], sim.instruments[j]
        axis_a, axis_b = _axis_nm(a), _axis_nm(b)
        order_a, order_b = np.argsort(axis_a), np.argsort(axis_b)
        pairs.append(
            Pair(
                f"seed {seed}: {a.name} / {b.name}",
                axis_a[order_a],
                axis_b[order_b],
                np.stack([r[0][order_a] for r in rows]),
                np.stack([r[1][order_b] for r in rows]),
            )
        )
    return pairs


def _axis_nm(instrument) -> np.ndarray:
    return instrument.axis if instrument.unit == "nm" else 1e7 / instrument.axis


def _robust_noise(x: np.ndarray) -> np.ndarray:
    """Robust white-noise σ along the last axis from the second difference."""
    d2 = np.diff(x, n=2, axis=-1)
    mad = np.median(np.abs(d2 - np.median(d2, axis=-1, keepdims=True)), axis=-1)
    return 1.4826 * mad / np.sqrt(6.0)


def _blocks(x: np.ndarray, width: int) -> np.ndarray:
    """(n, p) → (n, p // width, width): consecutive non-overlapping windows of each row."""
    k = x.shape[1] // width
    return x[:, : k * width].reshape(x.shape[0], k, width)


def _band_fwhm(a: np.ndarray) -> np.ndarray:
    """Median FWHM (nm) of the clear bands of each row of a (n, p) on the 2 nm grid (NaN: none)."""
    d2 = savgol_filter(a, 11, 3, deriv=2, axis=-1)
    out = np.full(a.shape[0], np.nan)
    for r, row in enumerate(d2):
        threshold = 0.05 * np.abs(row).max()
        minima = np.flatnonzero((row[1:-1] < row[:-2]) & (row[1:-1] <= row[2:])) + 1
        crossings = np.flatnonzero(np.diff(np.signbit(row)))  # sign changes between k, k + 1
        widths = []
        for m in minima[row[minima] < -threshold]:
            k = np.searchsorted(crossings, m)
            if 0 < k < crossings.size:
                widths.append((crossings[k] - crossings[k - 1]) * STEP_NM * 1.177)
        if widths:
            out[r] = np.median(widths)
    return out


def _shift(a: np.ndarray, b: np.ndarray, max_lag: int = 10) -> np.ndarray:
    """Per row, the lag (nm) maximising the correlation of the first derivatives of a and b."""
    da = savgol_filter(a, 7, 2, deriv=1, axis=-1)[:, max_lag:-max_lag]
    db = savgol_filter(b, 7, 2, deriv=1, axis=-1)
    p = da.shape[1]
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.stack(
        [np.sum(da * db[:, max_lag + k : max_lag + k + p], axis=1) for k in lags], axis=1
    )
    k = np.clip(np.argmax(corr, axis=1), 1, lags.size - 2)
    rows = np.arange(corr.shape[0])
    c0, c1, c2 = corr[rows, k - 1], corr[rows, k], corr[rows, k + 1]
    denom = c0 - 2 * c1 + c2
    frac = np.where(denom < 0, 0.5 * (c0 - c2) / np.where(denom < 0, denom, 1), 0.0)
    return (lags[k] + frac) * STEP_NM


def pair_statistics(pair: Pair) -> dict[str, np.ndarray] | None:
    """Every statistic in `STATS` per sample, (n,) each (None if the ranges barely overlap)."""
    lo = max(pair.axis_a[0], pair.axis_b[0])
    hi = min(pair.axis_a[-1], pair.axis_b[-1])
    if hi - lo < MIN_OVERLAP_NM:
        return None
    grid = np.arange(np.ceil(lo / STEP_NM) * STEP_NM, hi + 1e-9, STEP_NM)
    a = np.stack([np.interp(grid, pair.axis_a, row) for row in pair.a])
    b = np.stack([np.interp(grid, pair.axis_b, row) for row in pair.b])
    diff = b - a
    x = (grid - grid.mean()) / 1000.0
    coef = np.polynomial.polynomial.polyfit(x, diff.T, 1)  # (2, n): offset, slope
    shape = diff - (coef[0][:, None] + coef[1][:, None] * x)
    worst = [np.percentile(_robust_noise(_blocks(w, 25)), 95, axis=1) for w in (pair.a, pair.b)]
    return {
        "level": 0.5 * (a.mean(axis=1) + b.mean(axis=1)),
        "range": 0.5 * (np.ptp(a, axis=1) + np.ptp(b, axis=1)),
        "band_fwhm": np.nanmean(np.stack([_band_fwhm(a), _band_fwhm(b)]), axis=0),
        "noise": 0.5 * (_robust_noise(pair.a) + _robust_noise(pair.b)),
        "noise_worst": 0.5 * (worst[0] + worst[1]),
        "offset": np.abs(coef[0]),
        "slope": np.abs(coef[1]),
        "shift": np.abs(_shift(a, b)),
        "rms_diff": np.sqrt(np.mean(diff**2, axis=1)),
        "rms_shape_diff": np.sqrt(np.mean(shape**2, axis=1)),
    }


def table(real: list[Pair], simulated: list[Pair]) -> str:
    """The markdown comparison table: real pairs (medians over samples), then the simulator's
    percentiles over all simulated sample pairs."""
    real_stats = [(p.name, pair_statistics(p)) for p in real]
    sim_parts = [s for s in (pair_statistics(p) for p in simulated) if s is not None]
    sim = {k: np.concatenate([s[k] for s in sim_parts]) for k in STATS}
    header = [p for p, _ in real_stats] + ["sim p5", "sim p50", "sim p95", "sim p1–p99"]
    lines = [f"| statistic | {' | '.join(header)} |", "|---" * (len(header) + 1) + "|"]
    for key in STATS:
        cells = [_fmt(np.nanmedian(s[key])) for _, s in real_stats]
        p1, p5, p50, p95, p99 = np.nanpercentile(sim[key], [1, 5, 50, 95, 99])
        cells += [_fmt(p5), _fmt(p50), _fmt(p95), f"{_fmt(p1)}–{_fmt(p99)}"]
        lines.append(f"| {_LABELS[key]} | {' | '.join(cells)} |")
    lines.append("")
    lines.append(
        f"Simulated: {sim['level'].size} sample pairs on {len(sim_parts)} instrument pairs."
    )
    return "\n".join(lines)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def main(argv: list[str]) -> None:
    del argv
    args = flags.FLAGS
    simulated = []
    for seed in args.seeds:
        simulated += simulated_pairs(int(seed), args.samples)
    print(table(real_pairs(pathlib.Path(args.data_dir)), simulated))


if __name__ == "__main__":
    flags.DEFINE_string("data_dir", "../shared/data", "Development data directory.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Simulator seeds (instrument sets).")
    flags.DEFINE_integer("samples", 1000, "Simulated NIR samples per seed.")
    app.run(main)
