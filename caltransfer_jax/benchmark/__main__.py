r"""The transfer benchmark command.

    python -m caltransfer_jax.benchmark --config=configs/benchmark.py:corn --workdir=DIR

Runs `caltransfer_jax.benchmark.runner.run` on the configuration; see that module for the outputs.
"""

from absl import app, flags
from ml_collections import config_flags

from caltransfer_jax import runtime
from caltransfer_jax.benchmark import runner

_CONFIG = config_flags.DEFINE_config_file("config", None, "Benchmark configuration file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results, summary and plots.")


flags.register_validator("config", runtime.config_validator(runner.validate_config))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.configure()
    runner.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
