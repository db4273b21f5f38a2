r"""Pretraining input pipeline: random-access corpus sources → fixed token grid → global batches.

    python -m caltransfer_jax.pretrain.input_pipeline --bench                # on-the-fly simulator, spectra/s
    python -m caltransfer_jax.pretrain.input_pipeline --bench --config.prefetch=0 --config.global_batch=8
    python -m caltransfer_jax.pretrain.input_pipeline --bench --tfds_dir=DIR/simulated_spectra/n10000_seed0_v2/1.0.0

Sources are random access (`len`, `source[i]`, optionally `source.__getitems__(indices)`) and
yield flat records (see `caltransfer_jax.simulate.corpus.Simulator.generate`): the on-the-fly
simulator (`SimulatedSource`), a tfds array_record build (`TfdsSource`), or several of them mixed
with weights.

Determinism: the examples of step s are a pure function of (seed, s). Global slot j of step s has
the position q = s·G + j (G the global batch); a finite source maps q to an index through a
permutation drawn per epoch from (seed, source, epoch), the simulator uses q itself (its samples
are independent draws). With several sources, the source of each slot is drawn from
(seed, step). So the iterator state is the step number alone (`get_state`/`set_state`,
`iter_from_step`), and process p of P takes slots [p·G/P, (p+1)·G/P) of every step: disjoint parts,
local batch G/P, assembled into global `jax.Array`s by `make_global_batch`.

Each example holds two views of one sample (two instruments; the same view twice, `paired`
False, for single-view records), each on a fixed grid of `num_points` points in ascending
wavenumber: values padded with zeros (or a window cropped from longer spectra), a validity mask,
the wavenumber of each point, and per-spectrum standardisation (SNV over the valid points, with
the offset and scale kept so a loss can return to physical units).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import pathlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from absl import app, flags
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from ml_collections import config_flags

from caltransfer_jax.data.spectra import MODALITIES, from_wavenumber
from caltransfer_jax.models.inputs import NORMALIZATIONS, master_points, to_grid, to_master_grid
from caltransfer_jax.simulate.corpus import Simulator, SimulatorConfig
from caltransfer_jax.simulate.instruments import EFFECTS

Record = dict[str, np.ndarray]
Batch = dict[str, np.ndarray]
# Seed-sequence tags of the pipeline's own draws (kept apart from the simulator's streams).
_EPOCH_STREAM, _MIX_STREAM, _EXAMPLE_STREAM = 101, 102, 103


class CorpusError(ValueError):
    """A corpus that cannot be read; the message names the path and the problem."""


class Source(Protocol):
    """A random-access corpus of flat records."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Record: ...


class SimulatedSource:
    """The on-the-fly simulator as a source: record i is sample i.

    Args:
      config: simulator settings (default `SimulatorConfig()`).
      effects: instrument effects to apply.
      num_samples: corpus size (default 2³¹ - 1, effectively unbounded).
    """

    iid = True  # records are independent draws: no shuffling needed

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        effects: Sequence[str] = EFFECTS,
        num_samples: int = 2**31 - 1,
    ):
        self.simulator = Simulator(config or SimulatorConfig())
        self.effects = tuple(effects)
        self.num_samples = num_samples
        self.num_instruments = int(sum(self.simulator.config.instruments_per_modality))

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Record:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Record]:
        return self.simulator.generate(indices, self.effects)


class TfdsSource:
    """Records of a tfds array_record build, checked on opening.

    Args:
      path: the build's version directory (holding dataset_info.json), or a directory with
        exactly one such build below it.
      split: split name.

    Raises:
      CorpusError: missing or unreadable build, missing split, missing or truncated shard.
    """

    iid = False

    def __init__(self, path: str | pathlib.Path, split: str = "train"):
        import tensorflow_datasets as tfds  # heavy; only needed here

        path = pathlib.Path(path)
        if not path.is_dir():
            raise CorpusError(f"{path}: corpus directory does not exist")
        if not (path / "dataset_info.json").is_file():
            found = sorted(p.parent for p in path.glob("**/dataset_info.json"))
            if len(found) != 1:
                raise CorpusError(
                    f"{path}: no tfds build here (no dataset_info.json"
                    + (f"; candidates: {[str(f) for f in found]})" if found else ")")
                    + "; build one with `python -m data_prep.simulated_builder`"
                )
            path = found[0]
        try:
            json.loads((path / "dataset_info.json").read_text())
            builder = tfds.builder_from_directory(str(path))
        except Exception as e:  # tfds raises several types for a damaged build
            raise CorpusError(f"{path}: unreadable tfds build ({type(e).__name__}: {e})") from e
        splits = builder.info.splits
        if split not in splits:
            raise CorpusError(f"{path}: no split {split!r}; splits are {sorted(splits.keys())}")
        for name in splits[split].filenames:
            if not (path / name).is_file():
                raise CorpusError(f"{path}: shard {name} of split {split!r} is missing")
        self.path, self.split = path, split
        self.info = builder.info
        instruments = self.info.metadata.get("instruments") if self.info.metadata else None
        if not instruments:
            raise CorpusError(f"{path}: metadata.json lists no instruments; rebuild the corpus")
        self.num_instruments = len(instruments)
        self._data = builder.as_data_source(split=split)
        # Read the first and last record of every shard: a truncated file fails here.
        ends = np.cumsum(splits[split].shard_lengths)
        shards = zip(splits[split].filenames, ends, splits[split].shard_lengths, strict=True)
        for name, end, length in shards:
            try:
                self._data.__getitems__([int(end - length), int(end - 1)])
            except Exception as e:
                raise CorpusError(
                    f"{path / name}: cannot read records ({type(e).__name__}: {e}); "
                    "the shard is damaged, rebuild the corpus"
                ) from e

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int) -> Record:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Record]:
        try:
            return list(self._data.__getitems__(list(indices)))
        except RuntimeError as e:  # array_record reports damaged chunks on reading them
            raise CorpusError(
                f"{self.path} (split {self.split!r}): cannot read records {list(indices)[:8]} "
                f"({e}); the corpus is damaged, rebuild it"
            ) from e


@dataclasses.dataclass(frozen=True)
class PipelineState:
    """Iterator position and what it is valid for (stored in checkpoints as JSON)."""

    step: int
    seed: int
    global_batch: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PipelineState:
        return cls(**json.loads(text))


class InputPipeline:
    """Deterministic, resumable, per-process batches of paired views on a fixed grid.

    Args:
      sources: random-access sources.
      weights: mixture weights, one per source (default equal).
      global_batch: examples per step over all processes (G).
      num_points: points per spectrum on the token grid (L).
      seed: pipeline seed (order, views, crops, mixture).
      process_index, process_count: this process and the number of processes (default: JAX's).
      normalize: 'snv' or 'none'.
      prefetch: batches computed ahead in a background thread (0: none).
      instrument_offsets: added to the instrument ids of each source's records (default 0).
        Ids are local to a source; `make_pipeline` gives every source its own block of ids.
      master_grid: modality -> (native unit, start, stop). Given, every view is read at the
        `num_points` master-grid points inside its range, as the model methods read real
        spectra, and both views of a pair share those points; None (default): every view keeps
        its own points, a random window of `num_points` where it has more.

    Each batch (local batch B = G / process_count, C = concentration slots) holds:
      values (B, 2, L) float32; wavenumber (B, 2, L) float32 cm⁻¹; valid (B, 2, L) bool;
      offset, scale (B, 2) float32; modality (B, 2) int32 (index in MODALITIES);
      instrument (B, 2) int32; sample_id (B,) int32; paired (B,) bool; source (B,) int32;
      concentrations (B, C) float32; component_ids (B, C) int32 (-1 unused);
      path_length (B,) float32.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        weights: Sequence[float] | None = None,
        *,
        global_batch: int,
        num_points: int = 2048,
        seed: int = 0,
        process_index: int | None = None,
        process_count: int | None = None,
        normalize: str = "snv",
        prefetch: int = 0,
        instrument_offsets: Sequence[int] | None = None,
        master_grid: Mapping[str, Sequence] | None = None,
    ):
        if not sources:
            raise ValueError("at least one source is needed")
        weights = np.ones(len(sources)) if weights is None else np.asarray(weights, float)
        if weights.shape != (len(sources),) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"need one non-negative weight per source, got {weights}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if not 0 <= self.process_index < self.process_count:
            raise ValueError(f"process_index {self.process_index} not in [0, {self.process_count})")
        if global_batch % self.process_count:
            raise ValueError(
                f"global_batch {global_batch} is not divisible by {self.process_count} processes"
            )
        self.sources = list(sources)
        offsets = np.zeros(len(sources), np.int64)
        if instrument_offsets is not None:
            offsets = np.asarray(instrument_offsets, np.int64)
            if offsets.shape != (len(sources),) or np.any(offsets < 0):
                raise ValueError(f"need one instrument offset >= 0 per source, got {offsets}")
        self.instrument_offsets = offsets
        self.master_points = None
        if master_grid is not None:
            self.master_points = {m: master_points(master_grid, m, num_points) for m in MODALITIES}
        self.weights = weights / weights.sum()
        self.global_batch = global_batch
        self.local_batch = global_batch // self.process_count
        self.num_points, self.seed, self.normalize = num_points, seed, normalize
        self.prefetch = prefetch
        self._step = 0
        self._permutations: dict[tuple[int, int], np.ndarray] = {}
        self._executor = (
            concurrent.futures.ThreadPoolExecutor(max_workers=1) if prefetch > 0 else None
        )
        self._pending: collections.deque = collections.deque()

    # ----------------------------------------------------------------------------------------
    # Which records a step reads.

    def slots(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source (B,), record index (B,), global position (B,)) of this process at `step`."""
        g = self.global_batch
        lo = self.process_index * self.local_batch
        position = step * g + np.arange(lo, lo + self.local_batch, dtype=np.int64)
        if len(self.sources) == 1:
            source = np.zeros(self.local_batch, np.int64)
        else:  # every process draws the whole step's choice, then takes its slice
            rng = np.random.default_rng([self.seed, _MIX_STREAM, step])
            source = rng.choice(len(self.sources), size=g, p=self.weights)[
                lo : lo + self.local_batch
            ]
        index = np.array(
            [self._index(int(k), int(q)) for k, q in zip(source, position, strict=True)],
            dtype=np.int64,
        )
        return source, index, position

    def _index(self, k: int, q: int) -> int:
        n = len(self.sources[k])
        if getattr(self.sources[k], "iid", False):
            return q % n
        epoch = q // n
        if (k, epoch) not in self._permutations:
            if len(self._permutations) >= 2 * len(self.sources):  # keep the current epochs only
                self._permutations.pop(next(iter(self._permutations)))
            rng = np.random.default_rng([self.seed, _EPOCH_STREAM, k, epoch])
            self._permutations[(k, epoch)] = rng.permutation(n)
        return int(self._permutations[(k, epoch)][q % n])

    # ----------------------------------------------------------------------------------------
    # Batches.

    def batch(self, step: int) -> Batch:
        """This process's batch of step `step` (a pure function of seed and step)."""
        source, index, position = self.slots(step)
        records: list[Record | None] = [None] * self.local_batch
        for k in np.unique(source):
            rows = np.flatnonzero(source == k)
            src = self.sources[int(k)]
            if hasattr(src, "__getitems__"):
                got = src.__getitems__([int(i) for i in index[rows]])
            else:
                got = [src[int(i)] for i in index[rows]]
            for r, rec in zip(rows, got, strict=True):
                records[r] = rec
        examples = [
            self._example(rec, int(k), int(q))
            for rec, k, q in zip(records, source, position, strict=True)
        ]
        return {key: np.stack([e[key] for e in examples]) for key in examples[0]}

    def _example(self, record: Record, source: int, position: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, _EXAMPLE_STREAM, position])
        lengths = np.asarray(record["lengths"])
        ends = np.cumsum(lengths)
        n_views = lengths.size
        chosen = rng.permutation(n_views)[:2] if n_views >= 2 else np.zeros(2, np.int64)
        parts = [slice(int(ends[v] - lengths[v]), int(ends[v])) for v in chosen]
        views = [(record["values"][part], record["wavenumber"][part]) for part in parts]
        if self.master_points is None:
            grids = [to_grid(v, w, self.num_points, rng, self.normalize) for v, w in views]
        else:
            grids = self._on_master_grid(views, MODALITIES[int(record["modality"])])
        instrument = np.asarray(record["instrument"])[chosen] + self.instrument_offsets[source]
        modality = np.full(2, record["modality"], np.int32)
        out = {key: np.stack([g[key] for g in grids]) for key in grids[0]}
        out.update(
            modality=modality,
            instrument=instrument.astype(np.int32),
            sample_id=np.int32(record["sample_id"]),
            paired=np.bool_(n_views >= 2),
            source=np.int32(source),
            concentrations=np.asarray(record["concentrations"], np.float32),
            component_ids=np.asarray(record["component_ids"], np.int32),
            path_length=np.float32(record["path_length"]),
        )
        return out

    def _on_master_grid(self, views, modality: str) -> list[dict[str, np.ndarray]]:
        """Both views at the master-grid points of the range they share (each on its own range
        where they share fewer than 2 points), as the model methods read an instrument pair."""
        points, unit = self.master_points[modality]
        axes = [from_wavenumber(np.asarray(w, np.float64), unit) for _, w in views]
        span = (max(a.min() for a in axes), min(a.max() for a in axes))
        if np.count_nonzero((points >= span[0]) & (points <= span[1])) < 2:
            span = None
        return [to_master_grid(v, w, points, unit, self.normalize, span) for v, w in views]

    # ----------------------------------------------------------------------------------------
    # Iteration and state.

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._executor is None:
            out = self.batch(self._step)
        else:
            while len(self._pending) < self.prefetch + 1:
                ahead = self._step + len(self._pending)
                self._pending.append(self._executor.submit(self.batch, ahead))
            out = self._pending.popleft().result()
        self._step += 1
        return out

    def iter_from_step(self, step: int) -> Iterator[Batch]:
        """An iterator whose first batch is that of `step`."""
        self.set_state(PipelineState(step, self.seed, self.global_batch))
        return self

    def get_state(self) -> PipelineState:
        """The position: the step of the next batch."""
        return PipelineState(self._step, self.seed, self.global_batch)

    def set_state(self, state: PipelineState) -> None:
        """Continues from a saved position (same seed and global batch required)."""
        if (state.seed, state.global_batch) != (self.seed, self.global_batch):
            raise ValueError(
                f"pipeline state for seed {state.seed}, global batch {state.global_batch} does "
                f"not match this pipeline (seed {self.seed}, global batch {self.global_batch})"
            )
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._step = state.step


def make_pipeline(
    config, process_index: int | None = None, process_count: int | None = None
) -> InputPipeline:
    """The pipeline described by a `configs/simulate.py` ConfigDict (every field is read)."""
    sim = config.simulator
    simulator = SimulatedSource(
        SimulatorConfig(
            seed=sim.seed,
            num_components=sim.num_components,
            num_families=sim.num_families,
            max_components=sim.max_components,
            instruments_per_modality=tuple(sim.instruments_per_modality),
            modality_weights=tuple(sim.modality_weights),
            views_per_sample=sim.views_per_sample,
        ),
        effects=tuple(sim.effects),
    )
    sources = [simulator, *open_builds(config)]
    # Instrument ids are local to a source (a build's 0 is its own first instrument): each source
    # gets its own block of global ids, the simulator's first, so that the instrument terms and
    # the matched Sinkhorn groups never take one source's instrument for another's.
    counts = [source.num_instruments for source in sources]
    weights = tuple(config.weights) or None
    if weights is not None and len(weights) != len(sources):
        raise ValueError(
            f"config.weights has {len(weights)} entries for {len(sources)} sources "
            "(the simulator, then each of config.tfds_dirs)"
        )
    return InputPipeline(
        sources,
        weights,
        global_batch=config.global_batch,
        num_points=config.num_points,
        seed=config.seed,
        process_index=process_index,
        process_count=process_count,
        normalize=config.normalize,
        prefetch=config.prefetch,
        instrument_offsets=np.cumsum([0, *counts[:-1]]),
        master_grid=view_grid(config),
    )


def view_grid(config):
    """The master grid the views are read on (`config.views`), or None for their own points."""
    views = config.get("views", "native")  # configs saved before the option read natively
    if views == "native":
        return None
    if views != "master_grid":
        raise ValueError(f"data.views must be 'native' or 'master_grid', got {views!r}")
    if "master_grid" not in config:
        raise ValueError("data.views = 'master_grid' needs data.master_grid (a pretraining config)")
    return config.master_grid


def instrument_count(config) -> int:
    """Global instrument ids a `configs/simulate.py` config's sources use (simulator and builds).

    Raises:
      CorpusError: a build in `config.tfds_dirs` cannot be read.
    """
    simulated = int(sum(config.simulator.instruments_per_modality))
    return simulated + sum(build.num_instruments for build in open_builds(config))


def open_builds(config) -> list[TfdsSource]:
    """The builds of `config.tfds_dirs`, checked to stack with the simulator's records.

    Raises:
      CorpusError: a build cannot be read, or its concentration slots are not
        `config.simulator.max_components` wide.
    """
    builds = [TfdsSource(d) for d in config.tfds_dirs]
    width = config.simulator.max_components
    for build in builds:
        own = build.info.features["concentrations"].shape[0]
        if own != width:
            raise CorpusError(
                f"{build.path}: {own} concentration slots, but data.simulator.max_components is "
                f"{width}; rebuild the corpus with --max_components={width}"
            )
    return builds


def make_global_batch(batch: Batch, mesh: Mesh, data_axis: str = "data") -> dict[str, jax.Array]:
    """Assembles every process's local batch into global arrays sharded over `data_axis`.

    Args:
      batch: this process's local batch, leading dimension B = G / process_count.
      mesh: the device mesh.
      data_axis: mesh axis the batch dimension is split over.

    Returns:
      The same keys as global (G, ...) `jax.Array`s.
    """
    sharding = NamedSharding(mesh, PartitionSpec(data_axis))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


# --------------------------------------------------------------------------------------------
# Throughput benchmark.


def bench(pipeline: InputPipeline, steps: int) -> dict[str, Any]:
    """Times `steps` batches after one warm-up batch; spectra = examples × 2 views."""
    next(pipeline)  # warm-up: first shard reads, threads
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        next(pipeline)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    spectra = steps * pipeline.local_batch * 2
    return {
        "steps": steps,
        "local_batch": pipeline.local_batch,
        "num_points": pipeline.num_points,
        "seconds_per_step": wall / steps,
        "spectra_per_s": spectra / wall,
        "spectra_per_cpu_s": spectra / cpu,
    }


def main(argv: list[str]) -> None:
    del argv
    args = flags.FLAGS
    if not args.bench:
        raise app.UsageError("nothing to do: pass --bench")
    config = args.config
    pipeline = make_pipeline(config, process_index=0, process_count=1)
    result: dict[str, Any] = {"source": "simulator (on the fly)"}
    if args.tfds_dir:
        pipeline = InputPipeline(
            [TfdsSource(args.tfds_dir)],
            global_batch=config.global_batch,
            num_points=config.num_points,
            seed=config.seed,
            process_index=0,
            process_count=1,
            normalize=config.normalize,
            prefetch=config.prefetch,
        )
        result["source"] = args.tfds_dir
    else:
        start = time.perf_counter()
        pipeline.sources[0].simulator.build_library()
        result["library_seconds"] = time.perf_counter() - start
    result.update(bench(pipeline, args.steps))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    # Flags only when run as a command: the training entry point defines its own --config.
    config_flags.DEFINE_config_file(
        "config", "configs/simulate.py", "Data configuration (configs/simulate.py[:variant])."
    )
    flags.DEFINE_bool("bench", False, "Measure the pipeline's throughput.")
    flags.DEFINE_string("tfds_dir", None, "Read only this tfds build instead.")
    flags.DEFINE_integer("steps", 50, "Timed steps.")
    app.run(main)
