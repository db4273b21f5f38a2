"""Process settings every command applies first: a persistent compilation cache and glibc's
allocator settings.

- Compilation cache: compiled XLA programs are kept in `$CALTRANSFER_CACHE_DIR/jax` (default
  `~/.cache/caltransfer_jax/jax`), so a second run of the same command (and every spawned
  benchmark worker) loads what an earlier one compiled instead of compiling again.
- Allocator: one malloc arena, no mmap for large blocks and no trimming (measured −20 % CPU per
  train step, BENCHMARKS.md §2). For this process they are set with `mallopt`; for the processes
  it starts (spawned benchmark workers), through the environment. A value already in the
  environment is kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pathlib
import sys

CACHE_ENV = "CALTRANSFER_CACHE_DIR"
MALLOC_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "100000000000",
}
# mallopt parameter numbers (glibc malloc.h).
_MALLOPT = {"MALLOC_ARENA_MAX": -8, "MALLOC_MMAP_MAX_": -4, "MALLOC_TRIM_THRESHOLD_": -1}


def cache_root() -> pathlib.Path:
    """Where compiled things are kept: XLA programs and the native scan kernel."""
    root = os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "caltransfer_jax"
    return pathlib.Path(root)


def cache_dir() -> pathlib.Path:
    """Where compiled XLA programs are kept."""
    return cache_root() / "jax"


def configure() -> None:
    """Applies the settings to this process and to the processes it will start."""
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_dir()))
    # Cache every program that took a noticeable time to compile.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    libc = _glibc()
    for name, value in MALLOC_ENV.items():
        chosen = os.environ.setdefault(name, value)
        if libc is not None:
            libc.mallopt(_MALLOPT[name], int(chosen))
    # A JAX imported later reads the environment; one already imported is told directly.
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs",
            float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
        )


def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 (absent outside glibc)
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def config_validator(validate):
    """An absl flag validator for `--config` from `validate(config)` (raising ValueError), so a
    bad field is refused while the flags are parsed, naming the field."""
    from absl import flags

    def check(config) -> bool:
        try:
            validate(config)
        except ValueError as error:
            raise flags.ValidationError(f"--config.{error}") from None
        return True

    return check
