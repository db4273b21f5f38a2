"""The transfer benchmark: protocol (splits, transfer sets, leak checks), runner, metrics, report.

`python -m caltransfer_jax.benchmark --config=configs/benchmark.py:corn --workdir=DIR` runs it.
"""
