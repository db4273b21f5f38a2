"""The selective-scan implementations agree with each other and with a float64 reference."""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from caltransfer_jax.models import scan, scan_native
from caltransfer_jax.models.scan import selective_scan


def _implementations():
    """Every implementation; the native kernel only where it builds here (always under CI)."""
    if scan_native.available() or os.environ.get("CI"):
        return scan.IMPLS
    return tuple(impl for impl in scan.IMPLS if impl != "native")


IMPLS = _implementations()


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def _inputs(length, batch=2, channels=3, state=4, seed=0, zero_delta_at=()):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(batch, length, channels))
    # Δ spans the Taylor branch (|ΔA| < 0.1) and the direct branch of the ZOH factor.
    delta = np.exp(rng.uniform(np.log(1e-4), np.log(2.0), (batch, length, channels)))
    delta[:, list(zero_delta_at)] = 0.0
    A = -np.exp(rng.normal(size=(channels, state)))
    B = rng.normal(size=(batch, length, state))
    C = rng.normal(size=(batch, length, state))
    D = rng.normal(size=(channels,))
    h0 = rng.normal(size=(batch, channels, state))
    return tuple(np.asarray(x, np.float32) for x in (u, delta, A, B, C, D, h0))


def _numpy_reference(u, delta, A, B, C, D, h0, discretization):
    """The recurrence in float64 with NumPy, one step at a time."""
    u, delta, A, B, C, D, h0 = (np.asarray(x, np.float64) for x in (u, delta, A, B, C, D, h0))
    h = h0.copy()
    ys = []
    for t in range(u.shape[1]):
        z = delta[:, t, :, None] * A
        if discretization == "zoh":
            safe = np.where(z == 0, 1.0, z)
            factor = delta[:, t, :, None] * np.where(z == 0, 1.0, np.expm1(safe) / safe)
        else:
            factor = np.broadcast_to(delta[:, t, :, None], z.shape)
        h = np.exp(z) * h + factor * u[:, t, :, None] * B[:, t, None, :]
        ys.append(np.einsum("bdn,bn->bd", h, C[:, t]) + D * u[:, t])
    return np.stack(ys, axis=1), h


def _value_and_grads(impl, discretization):
    def loss(u, delta, A, B, C, D, h0):
        y, h_last = selective_scan(
            u, delta, A, B, C, D, h0, discretization=discretization, impl=impl
        )
        # Arbitrary fixed weights so every output element matters to the gradient.
        wy = jnp.cos(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
        wh = jnp.sin(jnp.arange(h_last.size, dtype=jnp.float32)).reshape(h_last.shape)
        return jnp.sum(wy * jnp.tanh(y)) + jnp.sum(wh * h_last), (y, h_last)

    return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(7)), has_aux=True))


@pytest.mark.parametrize(
    "length,discretization",
    [(1, "zoh"), (2, "zoh"), (7, "zoh"), (129, "zoh"), (7, "euler"), (129, "euler")],
)
def test_implementations_agree_in_values_and_gradients(length, discretization):
    args = _inputs(length)
    results = {impl: _value_and_grads(impl, discretization)(*args) for impl in IMPLS}
    y_ref, h_ref = _numpy_reference(*args, discretization)
    for impl, ((_, (y, h_last)), grads) in results.items():
        np.testing.assert_allclose(y, y_ref, rtol=2e-5, atol=2e-5, err_msg=impl)
        np.testing.assert_allclose(h_last, h_ref, rtol=2e-5, atol=2e-5, err_msg=impl)
        assert y.dtype == jnp.float32 and h_last.dtype == jnp.float32
        for name, g, g_ref in zip(
            "u delta A B C D h0".split(), grads, results["reference"][1], strict=True
        ):
            scale = float(jnp.max(jnp.abs(g_ref))) + 1e-6
            np.testing.assert_allclose(
                g / scale, g_ref / scale, atol=5e-5, err_msg=f"{impl} d/d{name}"
            )


def test_long_sequence_with_tiny_dims():
    length = 4096
    args = _inputs(length, batch=1, channels=2, state=2, seed=1)
    y_ref, h_ref = _numpy_reference(*args, "zoh")
    grads = {}
    for impl in IMPLS:
        (_, (y, h_last)), grads[impl] = _value_and_grads(impl, "zoh")(*args)
        np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4, err_msg=impl)
        np.testing.assert_allclose(h_last, h_ref, rtol=1e-4, atol=1e-4, err_msg=impl)
    for impl in IMPLS:
        for g, g_ref in zip(grads[impl], grads["reference"], strict=True):
            scale = float(jnp.max(jnp.abs(g_ref))) + 1e-6
            np.testing.assert_allclose(g / scale, g_ref / scale, atol=1e-4, err_msg=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_step_is_an_exact_no_op(impl):
    """Δ = 0 (a padded token) leaves the state unchanged; gradients stay finite there."""
    u, delta, A, B, C, _, h0 = _inputs(5, zero_delta_at=(2,))

    @jax.jit
    def final_state(u, delta, B, C):
        return selective_scan(u, delta, A, B, C, None, h0, impl=impl)[1]

    keep = [0, 1, 3, 4]
    h_full = final_state(u, delta, B, C)
    h_sub = final_state(u[:, keep], delta[:, keep], B[:, keep], C[:, keep])
    np.testing.assert_allclose(h_full, h_sub, rtol=1e-6, atol=1e-6)
    grads = jax.jit(jax.grad(lambda *a: jnp.sum(final_state(*a)), argnums=(0, 1, 2)))(
        u, delta, B, C
    )
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    np.testing.assert_array_equal(grads[0][:, 2], 0.0)  # u at a Δ = 0 step reaches nothing


def test_initial_state_continues_a_split_sequence():
    u, delta, A, B, C, D, h0 = _inputs(10)
    run = jax.jit(selective_scan)
    y_full, h_full = run(u, delta, A, B, C, D, h0)
    y1, h1 = run(u[:, :4], delta[:, :4], A, B[:, :4], C[:, :4], D, h0)
    y2, h2 = run(u[:, 4:], delta[:, 4:], A, B[:, 4:], C[:, 4:], D, h1)
    np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), y_full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h2, h_full, rtol=1e-5, atol=1e-5)


def test_low_precision_input_accumulates_in_float32():
    u, delta, A, B, C, D, h0 = _inputs(33)
    run = jax.jit(selective_scan)
    y32, _ = run(u, delta, A, B, C, D)
    y16, h16 = run(u.astype(jnp.bfloat16), delta, A, B, C, D)
    assert y16.dtype == jnp.bfloat16 and h16.dtype == jnp.float32
    np.testing.assert_allclose(y16.astype(jnp.float32), y32, rtol=5e-2, atol=5e-2)


def test_auto_resolves_per_backend_and_rejects_unknown_names():
    on_cpu = "native" if scan_native.available() else "fused"
    assert scan.resolve_impl("auto", 129, "cpu") == on_cpu
    assert scan.resolve_impl("auto", 2048, "cpu") == on_cpu
    assert scan.resolve_impl("auto", 2048, "gpu") == "associative"
    assert scan.resolve_impl("reference", 3) == "reference"
    mesh = jax.sharding.AbstractMesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    with jax.sharding.use_abstract_mesh(mesh):  # a sharded train step
        assert scan.resolve_impl("auto", 129, "cpu") == "fused"
    with pytest.raises(ValueError, match="native scan runs on CPU only"):
        scan.resolve_impl("native", 3, "gpu")
    with pytest.raises(ValueError, match="unknown scan implementation"):
        scan.resolve_impl("chunked", 3)
    with pytest.raises(ValueError, match="unknown discretization"):
        selective_scan(*_inputs(3)[:5], discretization="bilinear")


def test_the_native_kernel_runs_under_vmap_and_jit_like_the_model_calls_it():
    """Both scan directions of a Mamba block go through one vmapped call: the kernel sees the
    vmapped axis as more rows, and each row keeps its own A."""
    if "native" not in IMPLS:
        pytest.skip("the native kernel does not build here")
    u, delta, A, B, C, D, h0 = _inputs(9)
    stack = lambda x: jnp.stack([x, 2.0 * x])  # noqa: E731
    A2 = jnp.stack([A, 0.5 * A])

    def directional(impl):
        def run(u, delta, A, B, C):
            return selective_scan(u, delta, A, B, C, D, h0, impl=impl)[0]

        def loss(u, delta, A, B, C):
            return jnp.sum(jnp.sin(jax.vmap(run)(u, delta, A, B, C)))

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4)))

    args = (stack(u), stack(delta), A2, stack(B), stack(C))
    value, grads = directional("native")(*args)
    value_ref, grads_ref = directional("reference")(*args)
    np.testing.assert_allclose(value, value_ref, rtol=1e-5)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        scale = float(jnp.max(jnp.abs(g_ref))) + 1e-6
        np.testing.assert_allclose(g / scale, g_ref / scale, atol=5e-5)


def test_native_build_failures_say_why_and_leave_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("CALTRANSFER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(
        scan_native.NativeUnavailable, match="no C\\+\\+ compiler.*no-such-compiler"
    ):
        scan_native.open_library()
    if scan_native.shutil.which("c++") is None:
        return
    monkeypatch.setenv("CXX", "c++")
    (tmp_path / "file").write_text("")  # a cache root that is a file: nothing can be written
    monkeypatch.setenv("CALTRANSFER_CACHE_DIR", str(tmp_path / "file"))
    with pytest.raises(scan_native.NativeUnavailable, match="cannot write the kernel to"):
        scan_native.open_library()
    monkeypatch.setenv("CALTRANSFER_CACHE_DIR", str(tmp_path / "cache"))
    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(scan_native, "_SOURCE", broken)
    with pytest.raises(scan_native.NativeUnavailable, match="compiling broken.cc failed"):
        scan_native.open_library()
    native_dir = tmp_path / "cache" / "native"
    assert not any(path.is_file() for path in pathlib.Path(native_dir).rglob("*"))


def test_the_native_kernel_refuses_operands_of_the_wrong_size():
    if "native" not in IMPLS:
        pytest.skip("the native kernel does not build here")
    scan_native._load()
    u = jnp.ones((2, 5, 3))
    state = jnp.ones((2, 4, 3))
    wrong_b = jnp.ones((2, 6, 4))  # 6 steps where u has 5
    with pytest.raises(Exception, match="operand sizes do not match"):
        scan_native._call(
            "caltransfer_scan_forward",
            (u.shape, state.shape),
            u,
            u,
            state,
            wrong_b,
            wrong_b,
            state,
            zoh=1,
        )


def test_a_damaged_kernel_in_the_cache_is_built_again(tmp_path, monkeypatch):
    if "native" not in IMPLS:
        pytest.skip("the native kernel does not build here")
    monkeypatch.setenv("CALTRANSFER_CACHE_DIR", str(tmp_path))
    compiler = scan_native._compiler()
    path = scan_native.library_path(compiler)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a shared library")
    scan_native.open_library()
    assert path.read_bytes()[:4] == b"\x7fELF"
