r"""A simulated transfer data set: one product family measured on the same simulated instruments.

    python -m caltransfer_jax.simulate.pair --out=DIR [--seed=0] [--family=0] \
        [--instruments=0,5,8] [--num_samples=100] [--properties=3]

writes `DIR/<name>.toml`, one CSV file per instrument and `labels.csv` in the format of a user's
own data (`data/dataset_file.py`), so that the benchmark and `transfer` read it like any other
data set (`--config.dataset=DIR/<name>.toml`). Every sample of the family is measured once on
every instrument, each measurement with its own sample temperature, presentation, noise and axis
jitter (`corpus.Simulator.family_sample`); the properties are the mass fractions of the family's
components that vary most across the samples.

Why: a data set whose truth is known and whose instruments differ in range and resolution (the
default: a 700-point grating 1100–2498 nm, a 256-point extended-InGaAs array 1000–2500 nm, and
a second grating of the first one's type, as corn's m5 and mp6 are two units of one model), on
which transfer methods, and rules that choose among them, can be developed and checked without
looking at the real data sets they are evaluated on.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np

from caltransfer_jax.data.csv_export import write_rows, write_spectra_csv
from caltransfer_jax.data.spectra import Spectra
from caltransfer_jax.simulate.corpus import Simulator, SimulatorConfig

DEFAULT_INSTRUMENTS = (0, 5, 8)


def simulate_pair(
    seed: int,
    family_id: int,
    instruments: Sequence[int],
    num_samples: int,
    num_properties: int,
) -> tuple[dict[str, Spectra], list[str]]:
    """Spectra of `num_samples` samples of one family on each of `instruments`.

    Args:
      seed: simulator seed (fixes the components, instruments and families).
      family_id: the product family; all `instruments` must be of its modality.
      instruments: global instrument ids (`Simulator.instruments`), at least two.
      num_samples: samples, each measured once on every instrument.
      num_properties: how many components' mass fractions become properties (those with the
        largest standard deviation over the samples).

    Returns:
      ({short instrument name: Spectra with every component and the path length as labels},
      the property names chosen).
    """
    if len(instruments) < 2:
        raise ValueError(f"a transfer data set needs two or more instruments, got {instruments}")
    if num_samples < 10:
        raise ValueError(f"num_samples must be >= 10, got {num_samples}")
    sim = Simulator(SimulatorConfig(seed=seed))
    if not 0 <= family_id < sim.config.num_families:
        raise ValueError(f"family must be in [0, {sim.config.num_families}), got {family_id}")
    missing = [i for i in instruments if not 0 <= i < len(sim.instruments)]
    if missing:
        raise ValueError(f"no instruments {missing}; ids run 0…{len(sim.instruments) - 1}")
    family = sim.family(family_id)
    if not 1 <= num_properties <= family.component_ids.size:
        raise ValueError(
            f"family {family_id} has {family.component_ids.size} components; num_properties "
            f"must be 1…{family.component_ids.size}, got {num_properties}"
        )
    samples = [sim.family_sample(family_id, n, instruments) for n in range(num_samples)]
    views = sim.to_spectra(sim.measure(samples))
    spread = np.std([s.fractions for s in samples], axis=0)
    chosen = sorted(np.argsort(-spread)[:num_properties].tolist())
    names = [f"component_{j}" for j in chosen]
    return {_short(name): views[name] for name in views}, names


def _short(name: str) -> str:
    """'sim-NIR-05' -> 'nir05' (a plain TOML key and file name)."""
    return name.removeprefix("sim-").replace("-", "").lower()


def write_pair(
    directory: str | pathlib.Path,
    seed: int = 0,
    family_id: int = 0,
    instruments: Sequence[int] = DEFAULT_INSTRUMENTS,
    num_samples: int = 100,
    num_properties: int = 3,
) -> pathlib.Path:
    """Writes the data set of `simulate_pair` into a new or empty `directory` (nothing is
    overwritten); returns its dataset file."""
    directory = pathlib.Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty; write the data set into a new folder")
    parts, properties = simulate_pair(seed, family_id, instruments, num_samples, num_properties)
    name = f"sim{seed}_family{family_id}"
    first = next(iter(parts.values()))
    columns = [first.label_names.index(p) for p in properties]
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"name = {json.dumps(name)}",
        f"modality = {json.dumps(first.modality)}",
        'pairing = "id"',
        'id_column = "ID"',
        f"description = {json.dumps(_description(seed, family_id, instruments, num_samples))}",
    ]
    for short, spectra in parts.items():
        unit = write_spectra_csv(spectra, directory / f"{short}.csv")
        lines += ["", f"[instruments.{short}]", f'spectra = "{short}.csv"', f'axis_unit = "{unit}"']
    write_rows(
        directory / "labels.csv",
        ["ID", *properties],
        [
            [s, *map(repr, row)]
            for s, row in zip(first.sample_id, first.labels[:, columns].tolist(), strict=True)
        ],
    )
    units = ", ".join(f'{p} = "mass fraction"' for p in properties)
    lines += ["", "[labels]", 'file = "labels.csv"', f"units = {{ {units} }}"]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _description(seed: int, family_id: int, instruments: Sequence[int], num_samples: int) -> str:
    simulated = Simulator(SimulatorConfig(seed=seed)).instruments  # cheap: no spectra computed
    kinds = ", ".join(f"{_short(simulated[i].name)}: {simulated[i].template}" for i in instruments)
    return (
        f"Simulated (caltransfer_jax.simulate.pair): {num_samples} samples of product family "
        f"{family_id} of simulator seed {seed}, each measured on every instrument ({kinds})."
    )


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("out", None, "New or empty directory for the dataset file and CSVs.")
    flags.DEFINE_integer("seed", 0, "Simulator seed (components, instruments, families).")
    flags.DEFINE_integer("family", 0, "Product family; its modality must be the instruments'.")
    flags.DEFINE_list(
        "instruments", [str(i) for i in DEFAULT_INSTRUMENTS], "Global instrument ids."
    )
    flags.DEFINE_integer("num_samples", 100, "Samples, each measured on every instrument.")
    flags.DEFINE_integer("properties", 3, "Components whose mass fractions become properties.")
    flags.mark_flags_as_required(["out"])

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        args = flags.FLAGS
        try:
            instruments = [int(i) for i in args.instruments]
        except ValueError as error:
            raise app.UsageError(f"--instruments takes integer ids: {error}") from None
        try:
            path = write_pair(
                args.out, args.seed, args.family, instruments, args.num_samples, args.properties
            )
        except (ValueError, FileExistsError) as error:
            raise app.UsageError(str(error)) from None
        print(path)

    app.run(main)
