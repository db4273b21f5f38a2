"""The package layout as the README describes it: every path in its "What is here" table exists,
and every layer and command module of the package appears in it."""

import pathlib
import re

REPO = pathlib.Path(__file__).parents[1]


def _table_paths() -> set[str]:
    text = (REPO / "README.md").read_text()
    table = text.split("## What is here", 1)[1].split("\n## ", 1)[0]
    paths = set()
    for row in table.splitlines():
        if not row.startswith("| `"):
            continue
        cell = row.split("|")[1]
        names = re.findall(r"`([^`]+)`", cell)
        base = pathlib.PurePosixPath(names[0]).parent if "/" in names[0] else ""
        for name in names:
            paths.add(name if "/" in name else str(pathlib.PurePosixPath(base, name)))
    return paths


def test_every_path_in_the_readme_table_exists():
    missing = [p for p in _table_paths() if not (REPO / p).exists()]
    assert not missing, missing


def test_every_layer_and_command_of_the_package_is_in_the_table():
    listed = {p.rstrip("/") for p in _table_paths()}
    package = REPO / "caltransfer_jax"
    layers = {
        f"caltransfer_jax/{p.name}" for p in package.iterdir() if (p / "__init__.py").exists()
    }
    modules = {f"caltransfer_jax/{p.name}" for p in package.glob("*.py") if p.name != "__init__.py"}
    assert not (layers | modules) - listed, sorted((layers | modules) - listed)
