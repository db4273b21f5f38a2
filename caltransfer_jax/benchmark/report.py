"""The benchmark's report: summary.md, report.html (the same tables with every plot embedded:
one self-contained file that opens in a browser) and the PNG plots (`figures`).

Means and spreads are over splits × random draws; Kennard–Stone selections are reported on
their own rows. The "oracle" row of a cell is the best transfer row chosen with the test labels:
a yardstick for `auto`, shown only here and never used for anything else.
"""

from __future__ import annotations

import base64
import html
import pathlib

import markdown
import numpy as np

from caltransfer_jax.benchmark import figures
from caltransfer_jax.benchmark.protocol import CELL_KEY

ORACLE = "oracle (best by test labels)"


def _row_name(r) -> str:
    return r["method"] + (" [KS]" if r["selection"] == "kennard_stone" else "")


def aggregate(records) -> dict:
    """(source, target, property, row name, k) → (mean R², sd R², mean RMSEP, n, family)."""
    table = {}
    keys = CELL_KEY
    for key, group in figures.group_by(records, keys).items():
        for (row, k), rs in figures.group_by(
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
        lines += _oracle_line(table, (source, target, prop), ks)
        lines.append("")
    lines += _coverage_lines(records)
    (workdir / "summary.md").write_text("\n".join(lines) + "\n")
    plots = workdir / "plots"
    plots.mkdir(exist_ok=True)
    images = [
        p for metric in ("r2", "rmsep") for p in figures.plot_against_k(records, metric, plots)
    ]
    if predictions:
        images.append(figures.plot_scatter(records, predictions, plots))
    _write_html(workdir / "report.html", title, lines, [p for p in images if p is not None])


def _oracle_line(table, cell, ks) -> list[str]:
    """The best transfer row per k by mean test R² (random draws; the `auto` rows excluded)."""
    cells = []
    for k in ks:
        scores = {
            key[3]: value[0]
            for key, value in table.items()
            if key[:3] == cell
            and key[4] == k
            and value[4] in ("classical", "model")
            and "[KS]" not in key[3]
            and key[3] not in figures.AUTO_ROWS
        }
        best = max(scores, key=scores.get) if scores else None
        cells.append(f"*{scores[best]:.3f} ({best})*" if best else "")
    return [f"| *{ORACLE}* | " + " | ".join(cells) + " | |"]


def _write_html(path: pathlib.Path, title: str, lines: list[str], images) -> None:
    """summary.md's text as HTML with the plots embedded (base64 PNG): one file, no links."""
    body = markdown.markdown("\n".join(lines[1:]), extensions=["tables"])
    figures_html = "".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.name)}'
        "</figcaption></figure>"
        for p in images
    )
    path.write_text(
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><h2>Plots</h2>{figures_html}{body}</body></html>\n",
        encoding="utf-8",
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}"
    "th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}"
    "td:first-child,th:first-child{text-align:left}tr:nth-child(even){background:#f6f6f6}"
    "img{max-width:100%}figure{margin:1em 0}figcaption{color:#666;font-size:0.85em}"
)


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
    by_method = figures.group_by(records, ("method",))
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
