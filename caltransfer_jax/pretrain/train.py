"""Pretraining loop: `train_and_evaluate(config, workdir)`.

Sections, in order: config guard → mesh → input pipeline → learner and optimiser → sharded state
→ jitted update step → checkpoint restore → evaluator → train loop → export.

- The train state (step, parameters, optimiser state, EMA target, non-finite record) is created
  already sharded (`jax.jit(init, out_shardings=…)`) and updated by one compiled step that
  donates it. Randomness is a pure function of (seed, step): masks, noise, mixtures, dropout and
  latent sampling all fold the step into the seed's key, so a resumed run repeats the same steps.
- A step whose loss or gradient is not finite leaves the state unchanged and records the step and
  the first non-finite term; the host checks that record before every log and every checkpoint
  and stops with a `NonFiniteLossError` naming both, keeping the checkpoints already written (none
  is written after the bad step).
- Checkpoints (`checkpointing.Checkpointer`) are written every `checkpoint.every_steps`, at every
  evaluation (with the held-out metrics, for the best-checkpoint policy), at the end, and on
  SIGTERM / preemption, after which the run exits cleanly. A restart resumes from the latest.
- At the end, the model's parameters are exported (params-only, with the config as JSON) to
  `workdir/export`.
"""

from __future__ import annotations

import functools
import pathlib
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp
from absl import logging

from caltransfer_jax.models.export import export_params
from caltransfer_jax.objectives import (
    TERMS,
    byol,
    functional_learner,
    pretraining_terms,
    target_params,
    total_loss,
    with_target,
)
from caltransfer_jax.pretrain import checkpointing
from caltransfer_jax.pretrain import data as pretrain_data
from caltransfer_jax.pretrain import sharding as sharding_lib
from caltransfer_jax.pretrain.evaluation import Evaluator
from caltransfer_jax.pretrain.input_pipeline import instrument_count, make_global_batch
from caltransfer_jax.pretrain.metric_writer import MetricWriter, Progress
from caltransfer_jax.workdir import claim

_BARRIER_TIMEOUT_MS = 30 * 60 * 1000
# Names of the entries of the non-finite record: the loss terms, then the total, then gradients.
CHECK_NAMES = (*TERMS, "total", "gradient")
# Parameters without weight decay: biases, norms' scales and shifts, SSM A/D, MoE biases.
_NO_DECAY = re.compile(r"(bias|scale|A_log|/D$|/b[12]$|/cls$)")


class NonFiniteLossError(FloatingPointError):
    """A loss term or the gradient became NaN/inf."""


@flax.struct.dataclass
class TrainState:
    """Everything a checkpoint holds besides the input position.

    Attributes:
        step: () int32, steps taken.
        params: the learner's parameters (model + BYOL heads), a nested dict.
        opt_state: optax state.
        target: the BYOL EMA target (model + projector parameters).
        nonfinite: (2,) int32, [first step (1-based, as logged) with a non-finite value, its
            index in CHECK_NAMES], [-1, -1] while all is well.
    """

    step: jax.Array
    params: dict
    opt_state: Any
    target: dict
    nonfinite: jax.Array


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int):
    """AdamW with clipping and warm-up + cosine decay; returns (transform, schedule)."""
    opt = config.optimizer
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=opt.lr,
        warmup_steps=opt.warmup_steps,
        decay_steps=max(total_steps, opt.warmup_steps + 1),
        end_value=opt.lr * opt.final_lr_fraction,
    )

    def decay_mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, x: x.ndim >= 2 and not _NO_DECAY.search(sharding_lib.path_name(path)),
            params,
        )

    tx = optax.chain(
        optax.clip_by_global_norm(opt.clip_norm),
        optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay, mask=decay_mask),
    )
    return tx, schedule


def validate(config: ml_collections.ConfigDict, num_devices: int, num_processes: int) -> None:
    """Checks the config's bounds and cross-section constraints with clear messages."""
    data, model = config.data, config.model
    for field, value, ok in (
        ("total_steps", config.total_steps, config.total_steps >= 1),
        ("log_every", config.log_every, config.log_every >= 0),
        ("eval_every", config.eval_every, config.eval_every >= 0),
        (
            "checkpoint.every_steps",
            config.checkpoint.every_steps,
            config.checkpoint.every_steps >= 0,
        ),
        ("data.global_batch", data.global_batch, data.global_batch >= 1),
        ("data.num_points", data.num_points, data.num_points >= 1),
    ):
        if not ok:
            raise ValueError(f"{field} = {value!r} is out of range")
    total = instrument_count(data)  # the simulator's, then each build's own
    if total > model.vib.num_instruments:
        raise ValueError(
            f"the corpora have {total} instruments (the simulator's and those of "
            f"data.tfds_dirs) but model.vib.num_instruments is {model.vib.num_instruments}; "
            f"raise it to {total} or use fewer instruments"
        )
    for name, size in (
        ("model.embedding.patch_size", model.embedding.patch_size),
        ("objectives.mask.block", config.objectives.mask.block),
    ):
        if data.num_points % size:
            raise ValueError(
                f"data.num_points {data.num_points} is not a multiple of {name} {size}"
            )
    for name, batch in (
        ("data.global_batch", data.global_batch),
        ("eval.global_batch", config.eval.global_batch),
    ):
        if batch % num_devices or batch % num_processes:
            raise ValueError(
                f"{name} {batch} must be divisible by the {num_devices} devices of the batch "
                f"axis and the {num_processes} processes"
            )


def train_step(
    state: TrainState,
    batch: dict,
    *,
    config: ml_collections.ConfigDict,
    apply: Callable,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    base_key: jax.Array,
) -> tuple[TrainState, dict]:
    """One pretraining update: every objective term, the optimiser step and the EMA target.

    A step whose loss or gradient is not finite changes nothing but the step counter and the
    non-finite record (step, index into `CHECK_NAMES`).

    Args:
        state: the train state (donated by the jitted caller).
        batch: a global batch (`pretrain.data` keys).
        config: the full pretraining config.
        apply: `apply(params, key, train)` → the learner (`objectives.functional_learner`).
        tx, schedule: the optimiser and its learning-rate schedule.
        base_key: the run's key; the step's randomness is `fold_in(base_key, step)`.

    Returns:
        The new state and the step's metrics.
    """
    weights = config.objectives.weights
    key = jax.random.fold_in(base_key, state.step)
    objective_key, rng_key = jax.random.split(key)

    def loss_fn(params):
        online = apply(params, rng_key, train=True)
        target = apply(with_target(params, state.target), rng_key, train=False)
        terms, aux = pretraining_terms(online, target, batch, objective_key, config)
        return total_loss(terms, weights), (terms, aux)

    (loss, (terms, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = byol.ema_decay(state.step, config.total_steps, config.objectives.byol.ema_base)
    target = byol.ema_update(state.target, target_params(params), decay)

    checks = jnp.stack([*(terms[name] for name in TERMS), loss, grad_norm])
    bad = ~jnp.isfinite(checks)
    ok = ~bad.any()
    first_bad = jnp.where(
        (state.nonfinite[0] < 0) & ~ok,
        jnp.stack([state.step + 1, jnp.argmax(bad).astype(jnp.int32)]),
        state.nonfinite,
    )
    new = TrainState(state.step + 1, params, opt_state, target, first_bad)
    keep = TrainState(state.step + 1, state.params, state.opt_state, state.target, first_bad)
    new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, keep)
    metrics = {
        **{f"train/{name}": terms[name] for name in TERMS},
        "train/loss": loss,
        "train/grad_norm": grad_norm,
        "train/param_norm": optax.global_norm(state.params),
        "train/lr": schedule(state.step),
        "train/ema_decay": decay,
        "train/sinkhorn_groups": aux["sinkhorn_groups"],
    }
    return new, metrics


def _compile(step_fn, state: TrainState, batch: dict, mesh) -> Any:
    """Compiles the train step ahead of time (tracing under the mesh) and logs time and memory."""
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        compiled = step_fn.lower(state, batch).compile()
    memory = compiled.memory_analysis()
    logging.info(
        "compiled the train step in %.1f s (temporaries %.1f MiB, arguments %.1f MiB per device)",
        time.perf_counter() - start,
        getattr(memory, "temp_size_in_bytes", 0) / 2**20,
        getattr(memory, "argument_size_in_bytes", 0) / 2**20,
    )
    return compiled


def _itstime(step: int, every: int, total: int) -> bool:
    """Every `every` steps and at the last step; never when `every` ≤ 0."""
    return every > 0 and (step % every == 0 or step == total)


class _Stop:
    """SIGTERM → stop at the next step with a checkpoint (single process; with several, JAX's
    preemption sync point does this so that every process stops at the same step)."""

    def __init__(self, checkpointer: checkpointing.Checkpointer):
        self.checkpointer = checkpointer
        self.requested = False
        self._previous = None
        if jax.process_count() == 1:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __call__(self, step: int) -> bool:
        return self.requested or self.checkpointer.manager.reached_preemption(step)

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Pretrains the spectral model; resumes from `workdir` if it holds this run's checkpoints.

    Args:
        config: a `configs/pretrain.py` config.
        workdir: run directory (config.json, checkpoints/, export/, metrics.jsonl, tensorboard/).

    Returns:
        The metrics of the last logged step and the last evaluation.

    Raises:
        checkpointing.ConfigMismatchError: the workdir holds another configuration's run.
        NonFiniteLossError: a loss term or the gradient became NaN/inf.
    """
    workdir = pathlib.Path(workdir).resolve()
    # ----------------------------------------------------------------------------- config guard
    checkpointing.check_workdir_config(workdir, config)
    is_primary = jax.process_index() == 0

    # ------------------------------------------------------------------------------------- mesh
    mesh = sharding_lib.make_mesh(sharding_lib.parse_mesh(config.mesh))
    batch_devices = mesh.shape[config.batch_axis]
    validate(config, batch_devices, jax.process_count())
    # A pretraining workdir from before workdir marks is recognised by its config.json.
    claim(workdir, "pretrain", None, adopt=("config.json",), write=is_primary)
    checkpointing.write_config(workdir, config)
    writer = MetricWriter(workdir, enabled=is_primary)
    logging.info("mesh %s over %d processes", dict(mesh.shape), jax.process_count())

    # ------------------------------------------------------------------------------------- data
    data = pretrain_data.PretrainData(config, jax.process_index(), jax.process_count())
    heldout = [make_global_batch(b, mesh, config.batch_axis) for b in data.heldout()]

    # ------------------------------------------------------------------- learner and optimiser
    total_steps = config.total_steps
    tx, schedule = make_optimizer(config, total_steps)
    apply, init_params = functional_learner(config)
    base_key = jax.random.key(config.seed)

    def init() -> TrainState:
        params = init_params()
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            target=jax.tree.map(jnp.copy, target_params(params)),
            nonfinite=jnp.full((2,), -1, jnp.int32),
        )

    # ------------------------------------------------------------------------ sharded state
    abstract_state = jax.eval_shape(init)
    rules = sharding_lib.parse_rules(config.sharding_rules)
    state_shardings = sharding_lib.tree_shardings(abstract_state, mesh, rules, config.batch_axis)
    replicated = sharding_lib.replicated(mesh)

    # ------------------------------------------------------------------------------ update step
    step_fn = jax.jit(
        functools.partial(
            train_step, config=config, apply=apply, tx=tx, schedule=schedule, base_key=base_key
        ),
        in_shardings=(state_shardings, sharding_lib.batch_sharding(mesh, config.batch_axis)),
        out_shardings=(state_shardings, replicated),
        donate_argnums=0,
    )

    # ------------------------------------------------------------------------ checkpoint restore
    # The newest intact step: corrupt ones are reported and moved aside (checksum manifests).
    checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", config.checkpoint)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        abstract_state,
        state_shardings,
    )
    restored = checkpointer.restore_latest(abstract)
    if restored is not None:
        latest, state, data_state = restored
        data.set_state(data_state)
        logging.info("resumed from %s at step %d", checkpointer.directory, latest)
    else:
        state = jax.jit(init, out_shardings=state_shardings)()
    step = int(jax.device_get(state.step))
    if data.get_state()["step"] != step:
        raise RuntimeError(f"input position {data.get_state()} does not match state step {step}")

    evaluator = Evaluator(
        config, lambda params: apply(params, base_key, train=False), heldout, replicated
    )
    stop = _Stop(checkpointer)
    progress = Progress(total_steps, config.data.global_batch)

    def check_finite() -> None:
        bad_step, index = (int(v) for v in jax.device_get(state.nonfinite))
        if bad_step >= 0:
            checkpointer.wait()
            last = checkpointer.latest_step()
            kept = (
                f"the last good checkpoint is step {last} in {checkpointer.directory}"
                if last is not None
                else "no checkpoint was written"
            )
            raise NonFiniteLossError(
                f"non-finite {CHECK_NAMES[index]} in step {bad_step} (its update was skipped); "
                f"training stopped, {kept}"
            )

    # ------------------------------------------------------------------------------- train loop
    last_metrics: dict[str, float] = {}
    compiled = None
    try:
        while step < total_steps:
            batch = make_global_batch(next(data), mesh, config.batch_axis)
            if compiled is None:
                compiled = _compile(step_fn, state, batch, mesh)
                if config.eval_every > 0:
                    evaluator.compile(state.params)
                # Processes meet here, not in the first collective: gloo gives a process that
                # is late to a new collective context only 30 s, less than a compile can take.
                ocp.multihost.get_barrier_sync_fn()(
                    key="caltransfer_compiled", timeout_ms=_BARRIER_TIMEOUT_MS
                )
            # Every device-to-host transfer in the loop is explicit (jax.device_get).
            with jax.transfer_guard_device_to_host("disallow"):
                state, metrics = compiled(state, batch)
            step += 1
            if progress.compile_seconds != progress.compile_seconds:  # NaN: first step of this run
                jax.block_until_ready(state.step)
            progress.tick(step)
            preempted = stop(step)
            if _itstime(step, config.log_every, total_steps) or preempted:
                check_finite()
                summary = progress.summary(step)
                last_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                writer.write(step, {**last_metrics, **{f"perf/{k}": v for k, v in summary.items()}})
                if is_primary:
                    logging.info(
                        "%s; loss %.4f",
                        Progress.format(step, total_steps, summary),
                        last_metrics["train/loss"],
                    )
            eval_metrics = None
            if _itstime(step, config.eval_every, total_steps):
                progress.pause()
                check_finite()
                eval_metrics = evaluator(state.params)
                writer.write(step, eval_metrics)
                last_metrics.update(eval_metrics)
                if is_primary:
                    logging.info("eval at step %d: %s", step, eval_metrics)
                progress.resume()
            if (
                eval_metrics is not None
                or preempted
                or step == total_steps
                or _itstime(step, config.checkpoint.every_steps, total_steps)
            ):
                check_finite()
                checkpointer.save(step, state, data.get_state(), eval_metrics)
            if preempted:
                logging.info("stop requested: saved step %d, exiting", step)
                break
        checkpointer.wait()
        if step >= total_steps:
            export_dir = workdir / "export"
            export_params(
                export_dir,
                state.params["model"],
                config,
                {"step": step, "metrics": last_metrics},
            )
            logging.info("exported the model parameters to %s", export_dir)
    finally:
        stop.close()
        checkpointer.close()
        writer.close()
    return last_metrics
