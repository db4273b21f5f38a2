"""The benchmark command end to end on the `quick` variant, and its protocol checked from output.

Every assertion here reads only what the command wrote, so it would catch a runner that fitted
on test samples, ran a label-needing method at k = 0, or lost records.
"""

import json
import pathlib
import subprocess
import sys

import pytest

from caltransfer_jax.benchmark.protocol import Split, check_no_leak
from caltransfer_jax.methods import registry as methods

REPO = pathlib.Path(__file__).parents[1]
FIELDS = (
    "dataset source target property family method k selection split draw "
    "r2 rmsep rpd bias slope coverage"
).split()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bench")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "caltransfer_jax.benchmark",
            "--config=configs/benchmark.py:quick",
            f"--workdir={workdir}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    records = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
    splits = json.loads((workdir / "splits.json").read_text())
    sets = [json.loads(line) for line in (workdir / "transfer_sets.jsonl").read_text().splitlines()]
    return workdir, records, splits, sets


def test_outputs_exist(quick_run):
    workdir, records, _, _ = quick_run
    assert (workdir / "summary.md").read_text().startswith("# Transfer benchmark")
    assert (workdir / "plots" / "r2_vs_k_moisture.png").stat().st_size > 1000
    assert (workdir / "plots" / "rmsep_vs_k_moisture.png").stat().st_size > 1000
    assert (workdir / "plots" / "predicted_vs_reference_k10.png").stat().st_size > 1000
    for r in records:
        missing = [f for f in FIELDS if f not in r]
        assert not missing, missing


def test_no_test_sample_is_used_for_fitting_or_selection(quick_run):
    _, records, splits, sets = quick_run
    by_split = {s["index"]: s for s in splits}
    for s in splits:
        assert not set(s["pool"]) & set(s["test"])
        assert len(set(s["pool"]) | set(s["test"])) == 80  # corn: every sample, once
    index = {(t["source"], t["split"], t["k"], t["selection"], t["draw"]): t for t in sets}
    checked = 0
    for r in records:
        split = by_split[r["split"]]
        if r["k"] == 0 or r["family"] == "reference":
            continue
        tset = index[(r["source"], r["split"], r["k"], r["selection"], r["draw"])]
        assert len(tset["ids"]) == r["k"]
        assert set(tset["ids"]) <= set(split["pool"])
        assert not set(tset["ids"]) & set(split["test"])
        checked += 1
    assert checked > 0


def test_records_follow_the_protocol(quick_run):
    _, records, splits, _ = quick_run
    for r in records:
        if r["k"] == 0:
            # Only zero-shot methods and label-free references run without transfer samples.
            assert r["method"] in methods.MASTER_ON_MASTER or methods.METHODS[r["method"]].zero_shot
        if r["method"] == methods.FULL_RECALIBRATION:
            assert r["k"] == len(splits[r["split"]]["pool"])
        assert r["n_test"] == len(splits[r["split"]]["test"])
    # Every (k > 0, method) has the Kennard–Stone set and the configured random draws.
    counts = {}
    for r in records:
        if r["k"] > 0 and r["family"] == "classical":
            key = (r["method"], r["k"], r["selection"])
            counts[key] = counts.get(key, 0) + 1
    assert counts and all(
        n == (2 if sel == "kennard_stone" else 4) for (_, _, sel), n in counts.items()
    )


def test_reference_figures_are_sane(quick_run):
    _, records, _, _ = quick_run
    same = [r["r2"] for r in records if r["method"] == methods.MASTER_ON_MASTER]
    assert min(same) > 0.98  # m5 calibration on m5 spectra
    raw = [r["r2"] for r in records if r["method"] == "no_transfer"]
    assert max(raw) < 0  # m5 → mp6 moisture without correction fails badly


def test_leak_check_raises():
    split = Split(0, ("a", "b"), ("c",), "random")
    check_no_leak(split, ["a", "b"], "ok")
    with pytest.raises(AssertionError, match="test sample"):
        check_no_leak(split, ["a", "c"], "bad")


def test_report_draws_more_methods_than_the_palette_has_colours(tmp_path):
    from caltransfer_jax.benchmark import report

    records = [
        {
            "dataset": "toy", "source": "a", "target": "b", "property": "oil",
            "family": "classical", "method": f"method_{m:02d}", "k": k, "selection": "random",
            "split": 0, "draw": 0, "r2": 0.5 + 0.01 * m, "rmsep": 1.0, "coverage": 0.9,
            "interval_half_width": 1.0, "n_test": 5, "fit_seconds": 0.0, "guard": "",
        }
        for m in range(25)
        for k in (5, 10)
    ]  # fmt: skip
    report.write_report(records, tmp_path, title="toy")
    assert (tmp_path / "plots" / "r2_vs_k_oil.png").stat().st_size > 1000
    assert "method_24" in (tmp_path / "summary.md").read_text()


def test_report_is_one_html_file_with_readable_plots_and_the_oracle_row(tmp_path):
    import base64
    import html.parser
    import io

    import matplotlib.image

    from caltransfer_jax.benchmark import report

    def record(method, family, k, r2, split):
        return {
            "dataset": "toy", "source": "a", "target": "b", "property": "oil",
            "family": family, "method": method, "k": k, "selection": "random", "split": split,
            "draw": 0, "r2": r2, "rmsep": 1.0 - r2, "coverage": 0.9, "interval_half_width": 0.3,
            "n_test": 3, "fit_seconds": 0.0, "guard": "",
        }  # fmt: skip

    scores = {"pds": 0.6, "ds": 0.7, "auto": 0.9, "model_lora": 0.5}
    records = [
        record(m, "model" if m.startswith("model") else "classical", k, r2 + 0.01 * s, s)
        for m, r2 in scores.items()
        for k in (5, 10)
        for s in (0, 1)
    ]
    records += [record("mean_recentring", "classical", 0, 0.4, s) for s in (0, 1)]
    records += [record("full_recalibration", "reference", 40, 0.95, s) for s in (0, 1)]
    predictions = [
        {**{f: r[f] for f in ("source", "target", "property", "method", "selection", "split",
                              "draw")}, "y_true": [1.0, 2.0, 3.0], "y_pred": [1.1, 2.2, 2.7]}
        for r in records if r["k"] == 10
    ]  # fmt: skip
    report.write_report(records, tmp_path, title="toy <run>", predictions=predictions)

    summary = (tmp_path / "summary.md").read_text()
    # The oracle is the best transfer row by test R² without `auto`, per k (k = 0, 5, 10).
    oracle = f"| *{report.ORACLE}* | *0.400 (mean_recentring)* | *0.705 (ds)* | *0.705 (ds)* |"
    assert oracle in summary

    class Parser(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.images, self.links, self.cells = [], [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "img":
                self.images.append(attrs["src"])
            self.links += [v for k, v in attrs.items() if k in ("href", "src")]

        def handle_data(self, data):
            self.cells.append(data.strip())

    parser = Parser()
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    parser.feed(page)
    assert "toy &lt;run&gt;" in page
    assert all(link.startswith("data:image/png;base64,") for link in parser.links)
    assert len(parser.images) == 3  # R² and RMSEP against k, predicted against reference
    for src in parser.images:
        image = matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert image.shape[1] >= 1000  # readable at a glance: at least 1000 px wide
    assert "auto" in parser.cells and f"{report.ORACLE}" in parser.cells
