"""Pretraining data from the config: the simulated corpus, master views and the held-out set.

The input pipeline (`caltransfer_jax.pretrain.input_pipeline`) yields two instrument views per sample. The
pretraining objectives also need each sample's spectrum on the **master (canonical)
instrument**: an ideal spectrometer of the sample's modality with no instrument effect (no axis
error, line-shape broadening, stray light, non-linearity, gain, baseline or noise), reading the
sample's true spectrum (Beer–Lambert absorbance plus the sample's own scatter) on a fixed grid
per modality, `num_points` points uniform in the modality's native unit over `master_grid`. It
is the transfer head's target and, being before every instrument effect, the space where
Beer–Lambert mixing is linear. The simulator is random access, so it is recomputed here from
each example's sample id (the sample's draws are a pure function of the corpus seed and id).

Master views exist for the simulator's examples only; examples of other sources (tfds builds
mixed in through `config.data.tfds_dirs`) get an all-invalid master view, which the master-based
terms skip. Held-out data are the simulated corpus (components, families, instruments) at sample
ids from `eval_offset` on, which training never reaches.

Batch keys added to the pipeline's (B local examples, L points): master_values,
master_wavenumber (B, L) float32, master_valid (B, L) bool, master_offset, master_scale (B,)
float32 (master_values = (raw − offset) / scale on valid points).
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections
import numpy as np

from caltransfer_jax.data.spectra import MODALITIES
from caltransfer_jax.models.inputs import GRID_KEYS, to_grid
from caltransfer_jax.pretrain import input_pipeline as pipeline_lib
from caltransfer_jax.simulate import FINE_GRIDS, Simulator
from caltransfer_jax.simulate.instruments import Grid

MASTER_KEYS = GRID_KEYS


class MasterViews:
    """Computes master (canonical) views of simulated samples on fixed per-modality grids."""

    def __init__(
        self,
        simulator: Simulator,
        master_grid: ml_collections.ConfigDict,
        num_points: int,
        normalize: str,
    ):
        self.simulator = simulator
        self.num_points = num_points
        self.normalize = normalize
        self.grids: dict[str, tuple[Grid, np.ndarray]] = {}
        for modality in MODALITIES:
            unit, start, stop = master_grid[modality]
            grid = Grid(
                unit, float(start), (float(stop) - float(start)) / (num_points - 1), num_points
            )
            fine = FINE_GRIDS[modality]
            position = fine.position(grid.axis, unit)
            if position.min() < 0 or position.max() > fine.size - 1:
                raise ValueError(
                    f"master grid {modality} {start}-{stop} {unit} lies outside the simulation "
                    f"grid {fine.start}-{fine.axis[-1]} {fine.unit}"
                )
            self.grids[modality] = (grid, position)

    def __call__(
        self, sample_ids: Sequence[int], simulated: Sequence[bool]
    ) -> dict[str, np.ndarray]:
        """Master views of the given samples, keyed `master_<key>` (see the module docstring).

        Args:
            sample_ids: (B,) simulator sample indices.
            simulated: (B,) False for examples of other sources (all-invalid master view).
        """
        empty = {
            "values": np.zeros(self.num_points, np.float32),
            "wavenumber": np.zeros(self.num_points, np.float32),
            "valid": np.zeros(self.num_points, bool),
            "offset": np.float32(0.0),
            "scale": np.float32(1.0),
        }
        rows: list[dict[str, np.ndarray]] = [empty] * len(sample_ids)
        samples = {
            r: self.simulator.sample(int(i))
            for r, (i, sim) in enumerate(zip(sample_ids, simulated, strict=True))
            if sim
        }
        for modality in MODALITIES:
            members = [r for r, s in samples.items() if s.family.modality == modality]
            if not members:
                continue
            grid, position = self.grids[modality]
            fine = self.simulator.true_spectra([samples[r] for r in members])
            low = np.clip(np.floor(position).astype(np.int64), 0, fine.shape[1] - 2)
            frac = (position - low).astype(np.float32)
            values = fine[:, low] * (1 - frac) + fine[:, low + 1] * frac
            for r, v in zip(members, values, strict=True):
                rows[r] = to_grid(v, grid.wavenumber, self.num_points, None, self.normalize)
        return {f"master_{k}": np.stack([row[k] for row in rows]) for k in MASTER_KEYS}


class OffsetSource(pipeline_lib.SimulatedSource):
    """The simulated corpus from sample `offset` on (held-out samples)."""

    def __init__(self, source: pipeline_lib.SimulatedSource, offset: int, size: int):
        super().__init__(source.simulator.config, source.effects, num_samples=size)
        self.offset = offset

    def __getitems__(self, indices: Sequence[int]) -> list[pipeline_lib.Record]:
        return super().__getitems__([self.offset + int(i) for i in indices])


class PretrainData:
    """The training iterator: pipeline batches plus master views; resumable by step.

    Args:
        config: the full pretraining config (reads `config.data`).
        process_index, process_count: this process's share of every global batch.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        process_index: int,
        process_count: int,
    ):
        data = config.data
        self.pipeline = pipeline_lib.make_pipeline(data, process_index, process_count)
        self.simulated_source = self.pipeline.sources[0]
        # Its own simulator: the pipeline's may be busy in the prefetch thread (shared caches).
        self.master = MasterViews(
            Simulator(self.simulated_source.simulator.config),
            data.master_grid,
            data.num_points,
            data.normalize,
        )
        self.process_index, self.process_count = process_index, process_count
        self.config = config

    def __iter__(self) -> PretrainData:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return self._with_master(next(self.pipeline))

    def _with_master(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch.update(self.master(batch["sample_id"], batch["source"] == 0))
        return batch

    def get_state(self) -> dict[str, int]:
        """The position (the step of the next batch) as a JSON-able dict."""
        state = self.pipeline.get_state()
        return {"step": state.step, "seed": state.seed, "global_batch": state.global_batch}

    def set_state(self, state: dict[str, int]) -> None:
        """Continues from `get_state()`'s output (same seed and global batch required)."""
        self.pipeline.set_state(pipeline_lib.PipelineState(**state))

    def heldout(self) -> list[dict[str, np.ndarray]]:
        """This process's share of the fixed held-out set (`config.eval`), as local batches."""
        data, ev = self.config.data, self.config.eval
        size = ev.num_batches * ev.global_batch
        pipe = pipeline_lib.InputPipeline(
            [OffsetSource(self.simulated_source, data.eval_offset, size)],
            global_batch=ev.global_batch,
            num_points=data.num_points,
            seed=data.seed,
            process_index=self.process_index,
            process_count=self.process_count,
            normalize=data.normalize,
            master_grid=pipeline_lib.view_grid(data),
        )
        return [self._with_master(pipe.batch(step)) for step in range(ev.num_batches)]
