r"""Plots example simulated spectra, one panel per instrument, to a PNG.

    python -m caltransfer_jax.simulate.plot --out=FILE.png --seed=0

Each panel shows `--per_instrument` spectra measured on that instrument, on its own axis in its
native unit (nm or cm⁻¹), coloured by product family. A final panel shows one sample measured on
two instruments (a paired view) on a common wavelength axis.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
from absl import app, flags

from caltransfer_jax.simulate.corpus import Simulator, SimulatorConfig, split_views

_XLABEL = {"nm": "wavelength (nm)", "cm-1": "wavenumber (cm⁻¹)", "Raman": "Raman shift (cm⁻¹)"}


def collect(sim: Simulator, per_instrument: int, max_samples: int = 100_000) -> dict:
    """{instrument id: [(sample id, family, values (p,))]} with `per_instrument` entries each."""
    found: dict[int, list] = {i.instrument_id: [] for i in sim.instruments}
    start, chunk = 0, 256
    while any(len(v) < per_instrument for v in found.values()) and start < max_samples:
        for rec in sim.generate(range(start, start + chunk)):
            for inst, values in zip(rec["instrument"], split_views(rec)[0], strict=True):
                if len(found[int(inst)]) < per_instrument:
                    found[int(inst)].append((int(rec["sample_id"]), int(rec["family"]), values))
        start += chunk
    return found


def plot(sim: Simulator, out: str, per_instrument: int) -> None:
    """Writes the figure for simulator `sim` to `out`."""
    found = collect(sim, per_instrument)
    n = len(sim.instruments) + 1
    cols = 4
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, inst in zip(axes.flat, sim.instruments, strict=False):
        for k, (sample_id, family, values) in enumerate(found[inst.instrument_id]):
            ax.plot(
                inst.axis, values, lw=0.8, color=colors(k % 10), label=f"s{sample_id} f{family}"
            )
        ax.set_title(f"{inst.name}: {inst.template}", fontsize=8)
        ax.set_xlabel(_XLABEL[inst.modality if inst.modality == "Raman" else inst.unit], fontsize=7)
        ax.set_ylabel("intensity" if inst.modality == "Raman" else "absorbance", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="best")
    ax = axes.flat[len(sim.instruments)]
    rec = next(r for r in sim.generate(range(64)) if r["modality"] == 0)
    for inst_id, values in zip(rec["instrument"], split_views(rec)[0], strict=True):
        inst = sim.instruments[int(inst_id)]
        nm = inst.axis if inst.unit == "nm" else 1e7 / inst.axis
        ax.plot(nm, values, lw=0.8, label=inst.name)
    ax.set_title(f"sample {int(rec['sample_id'])} on two instruments", fontsize=8)
    ax.set_xlabel("wavelength (nm)", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.suptitle(f"Simulated spectra, seed {sim.config.seed}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> None:
    del argv
    args = flags.FLAGS
    plot(Simulator(SimulatorConfig(seed=args.seed)), args.out, args.per_instrument)


if __name__ == "__main__":
    flags.DEFINE_string("out", None, "PNG file to write.", required=True)
    flags.DEFINE_integer("seed", 0, "Simulator seed.")
    flags.DEFINE_integer("per_instrument", 4, "Spectra per instrument panel.")
    app.run(main)
