r"""Compute benchmark of the model on the current backend; writes JSON.

    python -m caltransfer_jax.speed --config=configs/model.py:default --out=bench.json

Measures, for each batch size (default 8 and 32) at `--num_points` points (2048 → 128 patch
tokens + [CLS] + [DOMAIN] at patch 16):

- forward (eval mode, all heads) and one training step (forward + backward + optax adamw update,
  train mode, a sum of stand-in losses over every head) per batch: compile time separately, then
  the median and min–max wall time of `--repeats` calls (≥ 5) and the process CPU time per call;
  spectra/s;
- the compiled program's memory (`memory_analysis()`) and FLOPs/bytes (`cost_analysis()`), and
  from them the fraction of this machine's matmul throughput and copy bandwidth, both measured in
  the same run (a 2048² float32 matmul, a 256 MiB copy);
- parameter count per module;
- every `selective_scan` implementation at the model's scan size (d = expand·d_model, n =
  d_state, batch `--scan_batch`) for each length in `--scan_lengths`, forward and
  forward + backward, each also as a fraction of this machine's `exp` throughput (measured in
  the same run): the time the scan's b·l·d·n exponentials of exp(Δ·A) alone would take (twice
  that for forward + backward, which recomputes them) over the measured time — the bound a
  scan that did nothing else per state element would reach.

The machine load (`os.getloadavg`) is recorded before and after; on a shared machine compare
only figures taken in the same run. XLA's cost analysis counts a `while` loop body once, not once
per iteration, so FLOPs of sequential scans are undercounted (the scan section gives their time).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from caltransfer_jax import runtime
from caltransfer_jax.models import IMPLS, build_model, selective_scan
from caltransfer_jax.models.model import HEADS

_CONFIG = config_flags.DEFINE_config_file("config", None, "Model config file.", lock_config=True)
_OUT = flags.DEFINE_string("out", None, "Where to write the JSON results.", required=True)
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["8", "32"], "Batch sizes of the model runs.")
_NUM_POINTS = flags.DEFINE_integer("num_points", 2048, "Points per spectrum.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed calls per measurement (after compiling).")
_SCAN_LENGTHS = flags.DEFINE_list("scan_lengths", ["129", "2048"], "Scan lengths to time.")
_SCAN_BATCH = flags.DEFINE_integer("scan_batch", 8, "Batch of the scan measurements.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of parameters and synthetic data.")
_RUNTIME = flags.DEFINE_bool(
    "runtime", False, "Apply the commands' runtime settings first (allocator, compile cache)."
)


def _load() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"1min": one, "5min": five, "15min": fifteen}


def time_compiled(fn: Callable, args: tuple, repeats: int, *, carry: bool = False) -> dict:
    """Compiles `fn` for `args`, then times `repeats` calls after one warm-up call.

    With `carry`, fn returns (state, aux) and the state is fed back as the first argument (for
    donated training state).
    """
    start = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=(0,) if carry else ()).lower(*args)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    args = list(args)

    def call():
        out = compiled(*args)
        jax.block_until_ready(out)
        if carry:
            args[0] = out[0]

    call()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    memory = compiled.memory_analysis()
    median = statistics.median(walls)
    return {
        "compile_s": compile_s,
        "median_s": median,
        "min_s": min(walls),
        "max_s": max(walls),
        "cpu_s_median": statistics.median(cpus),
        "flops": float(cost.get("flops", float("nan"))),
        "transcendentals": float(cost.get("transcendentals", float("nan"))),
        "bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
        "memory_bytes": {
            "arguments": memory.argument_size_in_bytes,
            "outputs": memory.output_size_in_bytes,
            "aliased": memory.alias_size_in_bytes,
            "temporaries": memory.temp_size_in_bytes,
            "peak_estimate": memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            - memory.alias_size_in_bytes
            + memory.temp_size_in_bytes,
        },
    }


def machine_limits(repeats: int) -> dict[str, float]:
    """Measures float32 matmul throughput and copy bandwidth on the current backend."""
    n = 2048
    a = jax.random.normal(jax.random.key(1), (n, n))
    matmul = time_compiled(lambda x, y: x @ y, (a, a), repeats)
    copy_elems = 64 * 2**20  # 256 MiB of float32
    x = jnp.ones((copy_elems,), jnp.float32)
    # Donated and updated in place: the sustained bandwidth. A freshly allocated output of this
    # size runs several times slower on CPU (page faults on first touch), reported beside it.
    in_place = time_compiled(lambda v: (v + 1.0, None), (x,), repeats, carry=True)
    fresh = time_compiled(lambda v: v + 1.0, (jnp.ones_like(x),), repeats)
    exp_elems = 16 * 2**20
    exp = time_compiled(
        lambda v: (jnp.exp(v), None), (-jnp.ones((exp_elems,)),), repeats, carry=True
    )
    return {
        "exp_per_s": exp_elems / exp["median_s"],
        "matmul_size": n,
        "matmul_gflops": 2 * n**3 / matmul["median_s"] / 1e9,
        "copy_gbytes_per_s": 2 * 4 * copy_elems / in_place["median_s"] / 1e9,
        "copy_to_fresh_buffer_gbytes_per_s": 2 * 4 * copy_elems / fresh["median_s"] / 1e9,
    }


def synthetic_batch(batch: int, num_points: int, config, seed: int) -> dict[str, jax.Array]:
    """Smooth random spectra on NIR-like axes, with padding, hidden blocks and targets."""
    rng = np.random.default_rng(seed)
    axis = np.linspace(4000.0, 10000.0, num_points)
    wavenumber = axis[None] + rng.uniform(-50, 50, (batch, 1))
    centers = rng.uniform(4000, 10000, (batch, 8, 1))
    widths = rng.uniform(50, 400, (batch, 8, 1))
    values = np.exp(-0.5 * ((wavenumber[:, None] - centers) / widths) ** 2).sum(1)
    values = (values - values.mean(1, keepdims=True)) / values.std(1, keepdims=True)
    valid = np.ones((batch, num_points), bool)
    valid[-1, -num_points // 8 :] = False  # one spectrum shorter than the grid
    hidden = np.zeros((batch, num_points), bool)
    for row in range(batch):  # ~20 % hidden in 8 contiguous blocks
        for start in rng.integers(0, num_points - num_points // 40, 8):
            hidden[row, start : start + num_points // 40] = True
    return {
        "values": jnp.asarray(values, jnp.float32),
        "wavenumber": jnp.asarray(wavenumber, jnp.float32),
        "valid": jnp.asarray(valid),
        "modality": jnp.zeros((batch,), jnp.int32),
        "hidden": jnp.asarray(hidden & valid),
        "master": jnp.asarray(values + 0.1 * rng.normal(size=values.shape), jnp.float32),
        "instrument": jnp.asarray(rng.integers(0, config.vib.num_instruments, batch), jnp.int32),
    }


def stand_in_loss(model, batch: dict[str, jax.Array]) -> jax.Array:
    """A sum of one loss per head and auxiliary output, so every parameter gets a gradient.

    Not the pretraining objective: reconstruction runs on the masked input while transfer reuses
    the same pass, which a real step would not mix.
    """
    out = model(
        batch["values"], batch["wavenumber"], batch["valid"], batch["modality"], batch["hidden"]
    )
    hidden = batch["hidden"].astype(jnp.float32)
    valid = batch["valid"].astype(jnp.float32)
    recon = jnp.sum(hidden * (out["reconstruction"] - batch["values"]) ** 2) / hidden.sum()
    transfer = jnp.sum(valid * (out["transfer"] - batch["master"]) ** 2) / valid.sum()
    kl = 1e-3 * jnp.mean(out["kl_chem"] + out["kl_inst"])
    inst = optax.softmax_cross_entropy_with_integer_labels(
        out["inst_logits"], batch["instrument"]
    ).mean()
    adversary = optax.softmax_cross_entropy_with_integer_labels(
        out["adv_logits"], batch["instrument"]
    ).mean()
    return recon + transfer + kl + inst + adversary + 0.01 * out["moe_balance_loss"]


def parameter_counts(model) -> dict[str, int]:
    """Parameter count of each top-level module, and the total."""
    params = nnx.state(model, nnx.Param)
    counts = {name: sum(x.size for x in jax.tree.leaves(sub)) for name, sub in params.items()}
    counts["total"] = sum(counts.values())
    return counts


def bench_model(config, batch_size: int, num_points: int, repeats: int, seed: int) -> dict:
    """Times the eval forward and the adamw training step at one batch size."""
    batch = synthetic_batch(batch_size, num_points, config, seed)
    model = build_model(config, seed)
    optimizer = nnx.Optimizer(model, optax.adamw(1e-4, weight_decay=0.01), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    def forward(state, batch):
        model, _ = nnx.merge(graphdef, state)
        model.eval()
        return model(
            batch["values"], batch["wavenumber"], batch["valid"], batch["modality"], heads=HEADS
        )

    def train_step(state, batch):
        model, optimizer = nnx.merge(graphdef, state)
        model.train()
        loss, grads = nnx.value_and_grad(stand_in_loss)(model, batch)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    results = {
        "forward": time_compiled(forward, (state, batch), repeats),
        "train_step": time_compiled(train_step, (state, batch), repeats, carry=True),
    }
    for entry in results.values():
        entry["spectra_per_s"] = batch_size / entry["median_s"]
    return results


def bench_scans(
    config, lengths: list[int], batch: int, repeats: int, seed: int, exp_per_s: float
) -> dict:
    """Times every scan implementation (forward, forward + backward) at the model's sizes;
    `exp_per_s`: the machine's exp throughput (`machine_limits`)."""
    channels = config.mamba.expand * config.d_model
    state = config.mamba.d_state
    discretization = config.mamba.discretization
    results: dict[str, Any] = {
        "batch": batch,
        "channels": channels,
        "state": state,
        "discretization": discretization,
    }
    for length in lengths:
        keys = jax.random.split(jax.random.key(seed), 5)
        u = jax.random.normal(keys[0], (batch, length, channels))
        delta = jax.nn.softplus(jax.random.normal(keys[1], (batch, length, channels)) - 3.0)
        A = -jnp.exp(0.5 * jax.random.normal(keys[2], (channels, state)))
        B = jax.random.normal(keys[3], (batch, length, state))
        C = jax.random.normal(keys[4], (batch, length, state))
        args = (u, delta, A, B, C)
        per_impl = {}
        for impl in IMPLS:

            def run(u, delta, A, B, C, impl=impl):
                return selective_scan(u, delta, A, B, C, discretization=discretization, impl=impl)

            def loss(u, delta, A, B, C, run=run):
                return jnp.sum(run(u, delta, A, B, C)[0] ** 2)

            per_impl[impl] = {
                "forward": time_compiled(run, args, repeats),
                "forward_backward": time_compiled(
                    jax.grad(loss, argnums=(0, 1, 2, 3, 4)), args, repeats
                ),
            }
            exps = batch * length * channels * state
            for name, count in (("forward", exps), ("forward_backward", 2 * exps)):
                timing = per_impl[impl][name]
                timing["fraction_of_exp_throughput"] = count / exp_per_s / timing["median_s"]
        results[str(length)] = per_impl
    return results


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _RUNTIME.value:
        runtime.configure()
    config = _CONFIG.value
    repeats = max(_REPEATS.value, 5)
    record: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "caltransfer_jax.speed"])
        + " "
        + " ".join(sys.argv[1:]),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax_version": jax.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_before": _load(),
        "num_points": _NUM_POINTS.value,
        "tokens": _NUM_POINTS.value // config.embedding.patch_size + 2,
        "repeats": repeats,
        "runtime_settings": _RUNTIME.value,
    }
    record["machine"] = machine_limits(repeats)
    record["parameters"] = parameter_counts(build_model(config, _SEED.value))
    record["model"] = {}
    for size in map(int, _BATCH_SIZES.value):
        entry = bench_model(config, size, _NUM_POINTS.value, repeats, _SEED.value)
        for timing in entry.values():
            timing["gflops_per_s"] = timing["flops"] / timing["median_s"] / 1e9
            timing["fraction_of_matmul_peak"] = (
                timing["gflops_per_s"] / record["machine"]["matmul_gflops"]
            )
            timing["fraction_of_copy_bandwidth"] = (
                timing["bytes_accessed"] / timing["median_s"] / 1e9
            ) / record["machine"]["copy_gbytes_per_s"]
        record["model"][str(size)] = entry
        print(f"batch {size}: " + json.dumps({k: v["median_s"] for k, v in entry.items()}))
    record["scan"] = bench_scans(
        config,
        list(map(int, _SCAN_LENGTHS.value)),
        _SCAN_BATCH.value,
        repeats,
        _SEED.value,
        record["machine"]["exp_per_s"],
    )
    record["load_after"] = _load()
    with open(_OUT.value, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
