"""Physics simulator of multi-instrument spectra: the embedded default pretraining corpus.

`bands` (pure components), `instruments` (instrument response), `corpus` (families, samples,
generation), `pair` (a simulated transfer data set, written as a dataset file), `stats`
(real-vs-simulated statistics), `plot` (example figure). See docs/SIMULATOR.md.
"""

from caltransfer_jax.simulate.corpus import Simulator, SimulatorConfig, split_views
from caltransfer_jax.simulate.instruments import EFFECTS, FINE_GRIDS, TEMPLATES, Instrument

__all__ = [
    "EFFECTS",
    "FINE_GRIDS",
    "TEMPLATES",
    "Instrument",
    "Simulator",
    "SimulatorConfig",
    "split_views",
]
