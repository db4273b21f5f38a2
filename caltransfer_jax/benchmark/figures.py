"""Plots of benchmark records: metric against k per instrument pair, predicted against reference.

Made to be read at a glance: per panel the `auto` row, the best classical row and the model rows
are drawn in colour with a band of ± one standard deviation over splits × draws, every other
method is a thin grey line, the reference rows are labelled horizontal lines, and the legend sits
outside the axes. Which classical row is "best" is decided from the records only for display:
nothing here feeds back into any fit.
"""

from __future__ import annotations

import collections
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

SCATTER_K = 10
AUTO_ROWS = ("auto", "auto_model", "auto_zero_shot")  # rows that choose among the others
DPI = 120
# Emphasised rows: `auto` and the best classical row first, then one colour per model row.
_AUTO, _BEST = "#c0392b", "#1f4e9c"
_MODEL_COLOURS = ("#e67e22", "#8e44ad", "#27ae60", "#a0522d", "#e84393", "#00a8a8", "#6c7a00")
_MUTED = "#b8b8b8"
_LABELS = {"r2": "R²", "rmsep": "RMSEP"}
_BEST_LABEL = "best classical row (named per panel)"


def group_by(records, keys) -> dict[tuple, list[dict]]:
    """Records grouped by the values of `keys`."""
    groups = collections.defaultdict(list)
    for r in records:
        groups[tuple(r[k] for k in keys)].append(r)
    return groups


def _drawn(group):
    """Random draws where there are any (Kennard–Stone alone when n_draws = 0)."""
    return [r for r in group if r["selection"] in ("random", "none", "all")] or group


def _curve(group, metric):
    ks = sorted({r["k"] for r in group})
    values = [[r[metric] for r in group if r["k"] == k] for k in ks]
    return (
        np.array(ks),
        np.array([np.mean(v) for v in values]),
        np.array([np.std(v) for v in values]),
    )


def best_classical(pair_records, metric: str = "r2") -> str | None:
    """The classical method with the best mean `metric` over its k (display only)."""
    scores = {
        method: np.mean([r[metric] for r in _drawn(group)])
        for (method,), group in group_by(pair_records, ("method",)).items()
        if group[0]["family"] == "classical" and method not in AUTO_ROWS
    }
    if not scores:
        return None
    pick = max if metric == "r2" else min
    return pick(scores, key=scores.get)


def _style(method, family, best, model_colours):
    """(colour, line width, emphasised) of a method's line."""
    if method in AUTO_ROWS:  # a line over k, or a diamond at k = 0
        return _AUTO, 2.4, True
    if method == best:
        return _BEST, 2.2, True
    if family == "model":
        return model_colours[method], 1.8, True
    return _MUTED, 0.8, False


def _draw_panel(ax, pair, metric: str, model_colours: dict, legend: dict) -> str | None:
    """One instrument pair's rows on `ax`; adds the handles it draws to `legend` (label →
    handle) and returns the pair's best classical row (display only)."""
    best = best_classical(pair, metric)
    for (method,), group in sorted(group_by(pair, ("method",)).items()):
        family = group[0]["family"]
        ks, mean, sd = _curve(_drawn(group), metric)
        if family == "reference":
            line = ax.axhline(mean[0], color="#555555", ls="--", lw=1.0)
            label = ax.annotate(
                method,
                (1.0, mean[0]),
                xycoords=("axes fraction", "data"),
                xytext=(-4, 3),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color="#555555",
                annotation_clip=True,  # hidden where the level is off the axes (R² ≪ 0)
            )
            label.set_in_layout(False)
            legend.setdefault("reference rows (dashed)", line)
            continue
        colour, width, emphasised = _style(method, family, best, model_colours)
        zorder = 3 if emphasised else 1
        if ks.tolist() == [0]:  # zero-shot: a point at k = 0 and its level across k
            line = ax.axhline(mean[0], color=colour, lw=width / 2, ls=":", zorder=zorder)
            if emphasised:
                line = ax.errorbar(
                    0,
                    mean[0],
                    yerr=sd[0],
                    color=colour,
                    marker="D",
                    ms=3 + width,
                    capsize=3,
                    lw=width,
                    zorder=zorder,
                )
        else:
            (line,) = ax.plot(
                ks, mean, color=colour, lw=width, marker="o", ms=3 + width, zorder=zorder
            )
            if emphasised:
                ax.fill_between(ks, mean - sd, mean + sd, color=colour, alpha=0.15, lw=0)
        if emphasised:
            legend.setdefault(_BEST_LABEL if method == best else method, line)
        else:
            legend.setdefault("other methods", line)
    ax.set_xlabel("transfer samples k", fontsize=10)
    ax.set_ylabel(_LABELS[metric], fontsize=10)
    ax.grid(alpha=0.3)
    if metric == "r2":
        ax.set_ylim(max(-0.5, ax.get_ylim()[0]), 1.0)
    return best


def plot_against_k(records, metric: str, out: pathlib.Path) -> list[pathlib.Path]:
    """One panel per instrument pair and one figure per property; returns the files written."""
    written = []
    for (prop,), rs in sorted(group_by(records, ("property",)).items()):
        pairs = sorted({(r["source"], r["target"]) for r in rs})
        model_methods = sorted({r["method"] for r in rs if r["family"] == "model"})
        model_colours = {
            m: _MODEL_COLOURS[i % len(_MODEL_COLOURS)] for i, m in enumerate(model_methods)
        }
        cols = min(3, len(pairs))
        rows = -(-len(pairs) // cols)
        # At least 1000 px wide at DPI, the legend in its own column on the right.
        fig, axes = plt.subplots(
            rows,
            cols,
            figsize=(max(5.6 * cols, 7.0) + 3.2, 4.6 * rows),
            squeeze=False,
            layout="constrained",
        )
        legend = {}
        for ax, (source, target) in zip(axes.flat, pairs, strict=False):
            pair = [r for r in rs if (r["source"], r["target"]) == (source, target)]
            best = _draw_panel(ax, pair, metric, model_colours, legend)
            named = f"\nbest classical: {best}" if best else ""
            ax.set_title(f"{source} → {target}{named}", fontsize=11)
        for ax in axes.flat[len(pairs) :]:
            ax.axis("off")
        fig.legend(
            legend.values(), legend.keys(), loc="outside right center", fontsize=9, frameon=False
        )
        fig.suptitle(
            f"{prop}: mean {_LABELS[metric]} over splits × random draws, band ± 1 sd\n"
            "(diamonds at k = 0 and dotted levels: zero-shot rows)",
            fontsize=12,
        )
        path = out / f"{metric}_vs_k_{prop}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written.append(path)
    return written


def plot_scatter(records, predictions, out: pathlib.Path) -> pathlib.Path | None:
    """Predicted against reference at k = SCATTER_K for the best transfer row of each panel,
    each point with its conformal interval (the record's half-width)."""
    combos = sorted({(p["source"], p["target"], p["property"]) for p in predictions})
    if not combos:
        return None
    props = sorted({c[2] for c in combos})
    pairs = sorted({c[:2] for c in combos})
    fig, axes = plt.subplots(
        len(props),
        len(pairs),
        figsize=(max(4.2 * len(pairs), 8.4), 4.0 * len(props)),
        squeeze=False,
    )
    for source, target, prop in combos:
        ax = axes[props.index(prop)][pairs.index((source, target))]
        cell = [
            r
            for r in records
            if (r["source"], r["target"], r["property"], r["k"])
            == (source, target, prop, SCATTER_K)
            and r["family"] != "reference"
        ]
        selection = "random" if any(r["selection"] == "random" for r in cell) else "kennard_stone"
        scores = collections.defaultdict(list)
        for r in cell:
            if r["selection"] == selection:
                scores[r["method"]].append(r["r2"])
        if not scores:
            continue
        best = max(scores, key=lambda m: np.mean(scores[m]))
        half_width = {
            (r["split"], r["draw"]): r["interval_half_width"]
            for r in cell
            if (r["method"], r["selection"]) == (best, selection)
        }
        for p in predictions:
            if (p["source"], p["target"], p["property"], p["method"], p["selection"]) != (
                source,
                target,
                prop,
                best,
                selection,
            ):
                continue
            width = half_width.get((p["split"], p["draw"]), np.inf)
            y_true, y_pred = np.asarray(p["y_true"]), np.asarray(p["y_pred"])
            if np.isfinite(width):
                ax.errorbar(
                    y_true,
                    y_pred,
                    yerr=width,
                    fmt="none",
                    ecolor=_MUTED,
                    lw=0.8,
                    alpha=0.6,
                    zorder=1,
                )
            ax.scatter(y_true, y_pred, s=10, alpha=0.7, color=_BEST, zorder=2)
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(
            f"{source} → {target}, {prop}\n{best}, R² {np.mean(scores[best]):.2f}", fontsize=10
        )
        ax.set_xlabel("reference")
        ax.set_ylabel("predicted (bars: conformal interval)")
    fig.tight_layout()
    path = out / f"predicted_vs_reference_k{SCATTER_K}.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
