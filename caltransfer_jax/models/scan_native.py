"""The selective scan as a compiled CPU kernel (`scan_native.cc`, XLA FFI), built on first use.

XLA:CPU runs each step of the fused `lax.scan` as ~20 separate loops over the state; the
kernel does one vectorised pass per step and keeps the state in cache, and its backward pass
recomputes each chunk of steps from a checkpoint (BENCHMARKS.md §2 has the measurements).

The source is compiled once per machine with the system's C++ compiler (`$CXX`, else `c++`)
against the installed jaxlib's FFI headers, into `$CALTRANSFER_CACHE_DIR/native` (default
`~/.cache/caltransfer_jax/native`), keyed by the source, flags, compiler, jaxlib version and
CPU. `available()` says whether that worked; `impl="auto"` falls back to the fused XLA scan
where it did not (and logs why), `impl="native"` raises. The kernel has no partitioning rule, so
`auto` does not pick it under a multi-device mesh (`scan.resolve_impl`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from caltransfer_jax import runtime

_SOURCE = pathlib.Path(__file__).with_name("scan_native.cc")
# -march=native: the library is built on the machine that runs it (the CPU is in the key).
_FLAGS = (
    "-std=c++20",
    "-O3",
    "-march=native",
    "-fopenmp-simd",
    "-fno-math-errno",
    "-fPIC",
    "-shared",
)
_TARGETS = {
    "caltransfer_scan_forward": "CaltransferScanForward",
    "caltransfer_scan_forward_train": "CaltransferScanForwardTrain",
    "caltransfer_scan_backward": "CaltransferScanBackward",
}
# Steps recomputed per checkpoint in the backward pass: the chunk's states and factors
# (2 · chunk · n · d floats per row) stay in L2 at the default model's n · d = 16 · 512.
_CHUNK = 16


class NativeUnavailable(RuntimeError):
    """The kernel could not be built or loaded here."""


def _cpu_signature() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str:
    compiler = os.environ.get("CXX") or "c++"
    if shutil.which(compiler) is None:
        raise NativeUnavailable(f"no C++ compiler: {compiler!r} is not on PATH (set $CXX)")
    return compiler


def library_path(compiler: str) -> pathlib.Path:
    """Where the library for this source, compiler, jaxlib and CPU is kept."""
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, check=False
    ).stdout
    key = hashlib.sha256()
    for part in (
        _SOURCE.read_bytes(),
        " ".join(_FLAGS),
        version,
        jax.__version__,
        _cpu_signature(),
    ):
        key.update(part if isinstance(part, bytes) else part.encode())
    return runtime.cache_root() / "native" / f"scan-{key.hexdigest()[:16]}.so"


def _build(compiler: str, target: pathlib.Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch_dir = tempfile.TemporaryDirectory(dir=target.parent)
    except OSError as error:
        raise NativeUnavailable(f"cannot write the kernel to {target.parent}: {error}") from None
    # Compiled next to the target and renamed into place, so a concurrent process never loads
    # a half-written library.
    with scratch_dir as scratch:
        partial = pathlib.Path(scratch) / target.name
        command = [
            compiler,
            *_FLAGS,
            f"-I{jax.ffi.include_dir()}",
            str(_SOURCE),
            "-o",
            str(partial),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise NativeUnavailable(
                f"compiling {_SOURCE.name} failed ({' '.join(command)}):\n{result.stderr[-2000:]}"
            )
        os.replace(partial, target)


def open_library() -> ctypes.CDLL:
    """Builds the kernel (once per machine; again if the cached file does not load) and loads
    it; raises NativeUnavailable with the reason."""
    if platform.system() != "Linux":
        raise NativeUnavailable(f"the native scan is built for Linux only, not {platform.system()}")
    compiler = _compiler()
    path = library_path(compiler)
    if not path.exists():
        _build(compiler, path)
    try:
        return ctypes.cdll.LoadLibrary(str(path))
    except OSError:
        # A damaged file in the cache (e.g. a full disk when it was written): built again once.
        _build(compiler, path)
        try:
            return ctypes.cdll.LoadLibrary(str(path))
        except OSError as error:
            raise NativeUnavailable(f"loading {path} failed: {error}") from None


@functools.cache
def _load() -> None:
    """Registers the kernel's handlers with XLA, once per process."""
    library = open_library()
    for name, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(
            name, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
        )


@functools.cache
def available() -> bool:
    """Whether the native kernel is built and registered (logs the reason once when not)."""
    try:
        _load()
    except NativeUnavailable as error:
        logging.warning("native selective scan unavailable, using the XLA scan: %s", error)
        return False
    return True


def _call(target: str, outputs, *operands, **attributes):
    types = tuple(jax.ShapeDtypeStruct(shape, jnp.float32) for shape in outputs)
    attributes = {name: np.int64(value) for name, value in attributes.items()}
    # Every operand gets the vmapped axes, so the kernel sees them as more rows.
    return jax.ffi.ffi_call(target, types, vmap_method="broadcast_all")(*operands, **attributes)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _scan_rows(u, delta, a, b, c, h0, zoh):
    """(y, h_last) for u, Δ (r, l, d), a = A per row (r, n, d), B, C (r, l, n), h0 (r, n, d)."""
    return _call("caltransfer_scan_forward", (u.shape, h0.shape), u, delta, a, b, c, h0, zoh=zoh)


def _checkpoints_shape(u, h0):
    length = u.shape[-2]
    chunk = min(_CHUNK, length)
    return chunk, (*h0.shape[:-2], math.ceil(length / chunk), *h0.shape[-2:])


def _scan_rows_forward(u, delta, a, b, c, h0, zoh):
    chunk, checkpoints = _checkpoints_shape(u, h0)
    y, h_last, saved = _call(
        "caltransfer_scan_forward_train",
        (u.shape, h0.shape, checkpoints),
        u,
        delta,
        a,
        b,
        c,
        h0,
        zoh=zoh,
        chunk=chunk,
    )
    return (y, h_last), (u, delta, a, b, c, h0, saved)


def _scan_rows_backward(zoh, residuals, cotangents):
    u, delta, a, b, c, h0, saved = residuals
    dy, dh_last = cotangents
    chunk, _ = _checkpoints_shape(u, h0)
    shapes = (u.shape, delta.shape, a.shape, b.shape, c.shape, h0.shape)
    return _call("caltransfer_scan_backward", shapes, *residuals, dy, dh_last, zoh=zoh, chunk=chunk)


_scan_rows.defvjp(_scan_rows_forward, _scan_rows_backward)


def scan_native(u, delta, A, B, C, h0, discretization):
    """The kernel behind `selective_scan(impl="native")`; arguments as `scan._scan_fused`."""
    _load()
    batch, _, channels = u.shape
    # The kernel keeps the state as (n, d), d contiguous, like the fused scan, and takes A per
    # row; the broadcast's gradient sums the rows' dA.
    a = jnp.broadcast_to(A.T, (batch, *A.T.shape))
    y, h_last = _scan_rows(u, delta, a, B, C, jnp.swapaxes(h0, 1, 2), int(discretization == "zoh"))
    return y, jnp.swapaxes(h_last, 1, 2)
