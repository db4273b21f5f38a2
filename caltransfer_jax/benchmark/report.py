"""Markdown summary and PNG plots of benchmark records.

Means and spreads are over splits × random draws; Kennard–Stone selections are reported on
their own rows. Which method is "best" in a figure is decided from the records only for
display: nothing here feeds back into any fit.
"""

from __future__ import annotations

import collections
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from caltransfer_jax.benchmark.protocol import CELL_KEY

SCATTER_K = 10


def _groups(records, keys):
    groups = collections.defaultdict(list)
    for r in records:
        groups[tuple(r[k] for k in keys)].append(r)
    return groups


def _row_name(r) -> str:
    return r["method"] + (" [KS]" if r["selection"] == "kennard_stone" else "")


def aggregate(records) -> dict:
    """(source, target, property, row name, k) → (mean R², sd R², mean RMSEP, n, family)."""
    table = {}
    keys = CELL_KEY
    for key, group in _groups(records, keys).items():
        for (row, k), rs in _groups(
            [dict(r, row=_row_name(r)) for r in group], ("row", "k")
        ).items():
            r2 = np.array([r["r2"] for r in rs])
            table[(*key, row, k)] = (
                float(r2.mean()),
                float(r2.std()),
                float(np.mean([r["rmsep"] for r in rs])),
                len(rs),
                rs[0]["family"],
            )
    return table


def write_report(
    records, workdir: pathlib.Path, title: str, predictions=(), notes: str = ""
) -> None:
    """Writes summary.md and the plots into workdir (`notes`: a paragraph under the title)."""
    workdir = pathlib.Path(workdir)
    table = aggregate(records)
    combos = sorted({key[:3] for key in table})
    ks = sorted({key[4] for key in table if table[key][4] != "reference"})
    lines = [
        f"# {title}",
        "",
        f"{len(records)} records. Cells: mean R² ± sd over splits × draws (mean RMSEP in",
        "parentheses, original units). Zero-shot methods are in the k = 0 column; reference",
        "rows (full recalibration on the target pool, master model on master spectra, no",
        "correction) are yardsticks, not transfer methods.",
        "",
    ]
    if notes:
        lines += [notes, ""]
    lines += _overview_lines(table, ks)
    for source, target, prop in combos:
        rows = sorted({key[3] for key in table if key[:3] == (source, target, prop)})
        lines += [f"## {source} → {target}, {prop}", ""]
        lines.append("| method | " + " | ".join(f"k={k}" for k in ks) + " | reference |")
        lines.append("|---" * (len(ks) + 2) + "|")
        for row in rows:
            cells = []
            for k in ks:
                cell = table.get((source, target, prop, row, k))
                cells.append(
                    f"{cell[0]:.3f} ± {cell[1]:.3f} ({cell[2]:.3g})"
                    if cell and cell[4] != "reference"
                    else ""
                )
            ref = [v for key, v in table.items() if key[:4] == (source, target, prop, row)]
            ref_cell = (
                f"{ref[0][0]:.3f} ± {ref[0][1]:.3f} ({ref[0][2]:.3g})"
                if ref and ref[0][4] == "reference"
                else ""
            )
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {ref_cell} |")
        lines.append("")
    lines += _coverage_lines(records)
    (workdir / "summary.md").write_text("\n".join(lines) + "\n")
    plots = workdir / "plots"
    plots.mkdir(exist_ok=True)
    for metric in ("r2", "rmsep"):
        _plot_against_k(records, metric, plots)
    if predictions:
        _plot_scatter(records, predictions, plots)


def _overview_lines(table, ks) -> list[str]:
    """Per property, each method's mean R² over instrument pairs (random draws only)."""
    lines = [
        "## Overview: mean R² over all instrument pairs",
        "",
        "Each cell averages the per-pair means; the best transfer method per column is in bold.",
        "",
    ]
    for prop in sorted({key[2] for key in table}):
        rows = sorted({key[3] for key in table if key[2] == prop and "[KS]" not in key[3]})
        means = {}
        for row in rows:
            for k in ks + ["ref"]:
                cells = [
                    v[0]
                    for key, v in table.items()
                    if key[2] == prop
                    and key[3] == row
                    and (key[4] == k or k == "ref")
                    and (v[4] == "reference") == (k == "ref")
                ]
                if cells:
                    means[row, k] = float(np.mean(cells))
        lines += [f"### {prop}", ""]
        lines.append("| method | " + " | ".join(f"k={k}" for k in ks) + " | reference |")
        lines.append("|---" * (len(ks) + 2) + "|")
        best = {k: max((v for (r, kk), v in means.items() if kk == k), default=None) for k in ks}
        for row in rows:
            cells = []
            for k in ks + ["ref"]:
                value = means.get((row, k))
                text = "" if value is None else f"{value:.3f}"
                cells.append(f"**{text}**" if value is not None and value == best.get(k) else text)
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _coverage_lines(records) -> list[str]:
    lines = [
        "## Conformal interval coverage on the target test sets",
        "",
        "Nominal level from the configuration; scores are held-out residuals of the calibration",
        "the method is built on (master CV residuals unless it calibrates on target labels).",
        "",
        "| method | mean coverage (finite intervals) | mean interval half-width |",
        "|---|---|---|",
    ]
    by_method = _groups(records, ("method",))
    for (method,), rs in sorted(by_method.items()):
        finite = [r for r in rs if np.isfinite(r["interval_half_width"])]
        width = (
            np.mean([r["interval_half_width"] / max(r["rmsep"], 1e-12) for r in finite])
            if finite
            else float("inf")
        )
        # Unbounded intervals cover trivially: the mean is over the finite ones.
        coverage = np.mean([r["coverage"] for r in finite]) if finite else float("nan")
        lines.append(
            f"| {method} | {coverage:.3f} | "
            f"{width:.2f} × RMSEP ({len(rs) - len(finite)} records with too few scores: ∞) |"
        )
    return lines + [""]


def _plot_against_k(records, metric: str, out: pathlib.Path) -> None:
    """One panel per instrument pair: transfer methods as lines, k = 0 methods as levels."""
    for (prop,), rs in _groups(records, ("property",)).items():
        pairs = sorted({(r["source"], r["target"]) for r in rs})
        methods = sorted({r["method"] for r in rs})
        # 20 colours; methods beyond them repeat a colour with another line style.
        palette = plt.cm.tab20(np.linspace(0, 1, 20))
        colours = {m: palette[i % 20] for i, m in enumerate(methods)}
        line_styles = {m: ("-", "-.", (0, (1, 1)))[i // 20 % 3] for i, m in enumerate(methods)}
        cols = min(3, len(pairs))
        rows = -(-len(pairs) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
        for ax, (source, target) in zip(axes.flat, pairs, strict=False):
            pair = [r for r in rs if (r["source"], r["target"]) == (source, target)]
            for (method,), group in sorted(_groups(pair, ("method",)).items()):
                # Random draws where there are any (Kennard–Stone alone when n_draws = 0).
                drawn = [r for r in group if r["selection"] in ("random", "none", "all")]
                group = drawn or group
                ks = sorted({r["k"] for r in group})
                means = [np.mean([r[metric] for r in group if r["k"] == k]) for k in ks]
                style = {"color": colours[method], "label": method, "lw": 1.2}
                line = line_styles[method]
                if group[0]["family"] == "reference" or ks == [0]:
                    dashes = "--" if group[0]["family"] == "reference" else ":"
                    ax.axhline(means[0], ls=dashes, **style)
                else:
                    ax.plot(ks, means, marker="o", ms=3, ls=line, **style)
            ax.set_title(f"{source} → {target}")
            ax.set_xlabel("transfer samples k")
            ax.set_ylabel({"r2": "R²", "rmsep": "RMSEP"}[metric])
            if metric == "r2":
                ax.set_ylim(max(-0.5, ax.get_ylim()[0]), 1.0)
        for ax in axes.flat[len(pairs) :]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
        fig.suptitle(
            f"{prop}: mean {metric.upper()} over splits × random draws "
            "(dotted: zero-shot, dashed: reference)"
        )
        fig.tight_layout(rect=(0, 0, 0.86, 0.95))
        fig.savefig(out / f"{metric}_vs_k_{prop}.png", dpi=90)
        plt.close(fig)


def _plot_scatter(records, predictions, out: pathlib.Path) -> None:
    """Predicted against reference for the best transfer method at k = SCATTER_K, per panel."""
    combos = sorted({(p["source"], p["target"], p["property"]) for p in predictions})
    fig, axes = plt.subplots(
        len({c[2] for c in combos}),
        len({c[:2] for c in combos}),
        figsize=(3.2 * len({c[:2] for c in combos}), 3.0 * len({c[2] for c in combos})),
        squeeze=False,
    )
    props = sorted({c[2] for c in combos})
    pairs = sorted({c[:2] for c in combos})
    for source, target, prop in combos:
        ax = axes[props.index(prop)][pairs.index((source, target))]
        cell = [
            r
            for r in records
            if (r["source"], r["target"], r["property"], r["k"])
            == (source, target, prop, SCATTER_K)
            and r["family"] != "reference"
        ]
        # Random draws where there are any (Kennard–Stone alone when n_draws = 0), as in the plots
        # against k.
        selection = "random" if any(r["selection"] == "random" for r in cell) else "kennard_stone"
        scores = collections.defaultdict(list)
        for r in cell:
            if r["selection"] == selection:
                scores[r["method"]].append(r["r2"])
        if not scores:
            continue
        best = max(scores, key=lambda m: np.mean(scores[m]))
        points = [
            p
            for p in predictions
            if (p["source"], p["target"], p["property"], p["method"], p["selection"])
            == (source, target, prop, best, selection)
        ]
        y_true = np.concatenate([p["y_true"] for p in points])
        y_pred = np.concatenate([p["y_pred"] for p in points])
        ax.scatter(y_true, y_pred, s=4, alpha=0.3)
        lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(
            f"{source}→{target} {prop}\n{best}, R² {np.mean(scores[best]):.2f}", fontsize=8
        )
        ax.set_xlabel("reference")
        ax.set_ylabel("predicted")
    fig.tight_layout()
    fig.savefig(out / f"predicted_vs_reference_k{SCATTER_K}.png", dpi=90)
    plt.close(fig)
