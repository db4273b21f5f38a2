"""Shared test fixtures.

Tests that read `../shared/data` (real spectra kept beside the repository for development) skip
with a reason where it is absent, and fail when the `CI` environment variable is set.
"""

import os
import pathlib

import pytest

SHARED_DATA = pathlib.Path(
    os.environ.get(
        "CALTRANSFER_SHARED_DATA", pathlib.Path(__file__).parents[1] / ".." / "shared" / "data"
    )
).resolve()


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """Path of the shared development data; skips (or fails under CI) when it is absent."""
    if not SHARED_DATA.is_dir():
        message = f"shared development data not found at {SHARED_DATA}"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> pathlib.Path:
    """A randomly initialised `:tiny` model written in the pretraining export format.

    It stands in for a pretrained export where tests check the mechanics of adaptation and the
    model rows, not a pretrained model's quality.
    """
    from flax import nnx

    from caltransfer_jax.models import build_model
    from caltransfer_jax.models.export import export_params
    from configs import pretrain

    config = pretrain.get_config("tiny")
    model = build_model(config.model, config.seed)
    directory = tmp_path_factory.mktemp("export") / "export"
    export_params(directory, nnx.to_pure_dict(nnx.state(model, nnx.Param)), config, {"step": 0})
    return directory
