"""The selective scan of a diagonal state-space model, as a pure function with swappable kernels.

For every batch row, channel d and state n the recurrence is

    h_t = Ā_t ⊙ h_{t-1} + B̄_t u_t,        y_t = Σ_n C_t[n] h_t[:, n] + D ⊙ u_t,

with Ā_t = exp(Δ_t A) and, for the input, either the exact zero-order hold
B̄_t = (Δ_t A)⁻¹ (exp(Δ_t A) − 1) Δ_t B_t or Euler's B̄_t = Δ_t B_t.

Four implementations compute the same function (tests hold them equal in values and gradients):

- ``"native"``: a compiled CPU kernel (`scan_native`: C++ through XLA's FFI, built on first use)
  doing one vectorised pass over the state per step, with its own backward pass that recomputes
  chunks of steps from checkpoints. About 4x the fused scan's forward + backward on CPU.
- ``"fused"``: a sequential `lax.scan` that discretises inside the step, so no (b, l, d, n) tensor
  is ever materialised; the step is rematerialised (`jax.checkpoint`) so the backward pass stores
  only the carried state. The fastest XLA-only scan on CPU (see BENCHMARKS.md).
- ``"associative"``: `jax.lax.associative_scan` over materialised (Ā, B̄u); parallel in the
  length, which is what accelerators want.
- ``"reference"``: a plain `lax.scan` over materialised (Ā, B̄u), using `expm1` for the ZOH factor;
  the independent reference the others are tested against.

``impl="auto"`` picks per backend and length (`resolve_impl`). Whatever the input dtype, the
discretisation and the state accumulate in float32; outputs are cast back to the dtype of `u`.

Shapes: b batch, l length, d channels, n state size.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from caltransfer_jax.models import scan_native

Impl = Literal["auto", "fused", "associative", "reference"]
Discretization = Literal["zoh", "euler"]
IMPLS = ("native", "fused", "associative", "reference")

# Below this |Δ·A| the ZOH factor (exp(z) − 1)/z is taken from its Taylor series: the direct
# quotient loses digits to cancellation as z → 0 and is 0/0 at z = 0 (Δ = 0 on padded tokens).
# At |z| = 0.1 the truncation error of the degree-4 series is z⁵/6! ≈ 1.4e-8.
_TAYLOR_BELOW = 0.1


def resolve_impl(impl: Impl, length: int, backend: str | None = None) -> str:
    """Maps ``impl="auto"`` to a concrete implementation for a backend and sequence length.

    On CPU the native kernel is the fastest at every length measured, and the fused sequential
    scan the fastest of the XLA-only ones, used where the kernel cannot be built (no C++
    compiler) or the trace runs under a mesh of several devices: at 129 and 2048 tokens (batch 8, 512 channels, state 16) the associative scan is
    8–37x slower than the fused one and the reference 5–16x, forward and forward + backward,
    and both need 11–38x the scratch memory (BENCHMARKS.md). On GPU/TPU the associative scan
    parallelises over the length and is the usual choice; that branch is not measured on this
    project's hardware.

    Args:
        impl: a name from `IMPLS` or ``"auto"``.
        length: the sequence length l.
        backend: ``jax.default_backend()`` when None.

    Returns:
        One of `IMPLS`.
    """
    backend = backend or jax.default_backend()
    if impl != "auto":
        if impl not in IMPLS:
            raise ValueError(f"unknown scan implementation {impl!r}; expected one of {IMPLS}")
        if impl == "native" and backend != "cpu":
            raise ValueError(f"the native scan runs on CPU only, not {backend!r}; use 'auto'")
        return impl
    if backend == "cpu":
        # The native kernel has no partitioning rule: traced under a multi-device mesh, XLA would
        # gather its operands onto every device, so there the fused scan (partitioned like any
        # XLA op) runs instead.
        if jax.sharding.get_abstract_mesh().size > 1:
            return "fused"
        return "native" if scan_native.available() else "fused"
    if length == 1:
        return "fused"
    return "associative"


def _zoh_factor(z: Array, dA: Array, inv_A: Array, delta: Array) -> Array:
    """Returns Δ·(exp(z) − 1)/z for z = Δ·A, with `dA` = exp(z) and `inv_A` = 1/A given.

    Uses (exp(z) − 1)·(1/A) away from 0, so the loop needs no division and no second
    transcendental, and Δ·(1 + z/2 + z²/6 + z³/24 + z⁴/120) near 0. Both branches are finite
    everywhere, so the `where` has finite gradients.
    """
    taylor = delta * (1.0 + z * (1 / 2 + z * (1 / 6 + z * (1 / 24 + z * (1 / 120)))))
    return jnp.where(jnp.abs(z) < _TAYLOR_BELOW, taylor, (dA - 1.0) * inv_A)


def _discretize_materialized(
    u: Array, delta: Array, A: Array, B: Array, discretization: Discretization
) -> tuple[Array, Array]:
    """Returns (Ā, B̄u), both (b, l, d, n), for the materialising kernels."""
    z = delta[..., None] * A
    dA = jnp.exp(z)
    if discretization == "zoh":
        # expm1(z)/z, made safe at z = 0 (Δ = 0 on padded tokens) where its limit is 1.
        small = jnp.abs(z) < 1e-6
        safe_z = jnp.where(small, 1.0, z)
        factor = delta[..., None] * jnp.where(small, 1.0 + z / 2, jnp.expm1(safe_z) / safe_z)
    else:
        factor = jnp.broadcast_to(delta[..., None], z.shape)
    dBu = factor * (u[..., None] * B[..., None, :])
    return dA, dBu


def _scan_reference(u, delta, A, B, C, h0, discretization):
    dA, dBu = _discretize_materialized(u, delta, A, B, discretization)

    def step(h, xs):
        dA_t, dBu_t, C_t = xs
        h = dA_t * h + dBu_t
        return h, jnp.einsum("bdn,bn->bd", h, C_t)

    xs = (jnp.moveaxis(dA, 1, 0), jnp.moveaxis(dBu, 1, 0), jnp.moveaxis(C, 1, 0))
    h_last, y = jax.lax.scan(step, h0, xs)
    return jnp.moveaxis(y, 0, 1), h_last


def _scan_associative(u, delta, A, B, C, h0, discretization):
    dA, dBu = _discretize_materialized(u, delta, A, B, discretization)
    # h0 enters as the state before the first element: h_1 = Ā_1 h0 + B̄_1 u_1.
    dBu = dBu.at[:, 0].add(dA[:, 0] * h0)

    def combine(left, right):
        a_l, b_l = left
        a_r, b_r = right
        return a_r * a_l, a_r * b_l + b_r

    _, h = jax.lax.associative_scan(combine, (dA, dBu), axis=1)
    return jnp.einsum("bldn,bln->bld", h, C), h[:, -1]


def _scan_fused(u, delta, A, B, C, h0, discretization):
    # The state is kept as (b, n, d): the channel axis, the long one, is contiguous, so the
    # reductions over n (y, and dΔ, du in the backward pass) add whole vectors instead of
    # summing 16 lanes; this halves the backward time on CPU against (b, d, n).
    A_t = A.T
    inv_A_t = 1.0 / A_t

    # Rematerialised: the backward pass keeps only the carried state per step and recomputes
    # exp(Δ·A) from (Δ_t, A), instead of storing every (b, n, d) intermediate of the step.
    @jax.checkpoint
    def step(h, xs):
        u_t, delta_t, B_t, C_t = xs
        z = delta_t[:, None, :] * A_t
        dA = jnp.exp(z)
        if discretization == "zoh":
            factor = _zoh_factor(z, dA, inv_A_t, delta_t[:, None, :])
        else:
            factor = delta_t[:, None, :]
        h = dA * h + factor * (u_t[:, None, :] * B_t[:, :, None])
        return h, jnp.sum(h * C_t[:, :, None], axis=1)

    xs = tuple(jnp.moveaxis(x, 1, 0) for x in (u, delta, B, C))
    h_last, y = jax.lax.scan(step, jnp.swapaxes(h0, 1, 2), xs)
    return jnp.moveaxis(y, 0, 1), jnp.swapaxes(h_last, 1, 2)


_KERNELS = {
    "native": scan_native.scan_native,
    "fused": _scan_fused,
    "associative": _scan_associative,
    "reference": _scan_reference,
}


def selective_scan(
    u: Float[Array, "b l d"],
    delta: Float[Array, "b l d"],
    A: Float[Array, "d n"],
    B: Float[Array, "b l n"],
    C: Float[Array, "b l n"],
    D: Float[Array, " d"] | None = None,
    h0: Float[Array, "b d n"] | None = None,
    *,
    discretization: Discretization = "zoh",
    impl: Impl = "auto",
) -> tuple[Float[Array, "b l d"], Float[Array, "b d n"]]:
    """Runs the selective scan y = SSM(Ā(Δ), B̄(Δ), C)(u) + D·u.

    Args:
        u: (b, l, d) input sequence.
        delta: (b, l, d) step sizes Δ ≥ 0 (softplus already applied). Δ = 0 makes a step an exact
            no-op on the state (Ā = 1, B̄ = 0), which is how padded tokens are skipped.
        A: (d, n) state matrix diagonal, strictly negative.
        B: (b, l, n) input projection, shared by all channels.
        C: (b, l, n) output projection, shared by all channels.
        D: (d,) skip connection, or None for none.
        h0: (b, d, n) initial state, zeros when None.
        discretization: ``"zoh"`` (exact zero-order hold) or ``"euler"`` (B̄ = Δ·B).
        impl: ``"fused"``, ``"associative"``, ``"reference"`` or ``"auto"`` (`resolve_impl`).

    Returns:
        y: (b, l, d) outputs in the dtype of `u`.
        h_last: (b, d, n) float32 state after the last step (pass it as `h0` to continue).
    """
    if discretization not in ("zoh", "euler"):
        raise ValueError(f"unknown discretization {discretization!r}; expected 'zoh' or 'euler'")
    batch, length, channels = u.shape
    kernel = _KERNELS[resolve_impl(impl, length)]
    f32 = jnp.float32
    if h0 is None:
        h0 = jnp.zeros((batch, channels, A.shape[-1]), f32)
    y, h_last = kernel(
        u.astype(f32),
        delta.astype(f32),
        A.astype(f32),
        B.astype(f32),
        C.astype(f32),
        h0.astype(f32),
        discretization,
    )
    if D is not None:
        y = y + D.astype(f32) * u.astype(f32)
    return y.astype(u.dtype), h_last
