r"""Transfer benchmark configurations.

    python -m caltransfer_jax.benchmark --config=configs/benchmark.py:corn --workdir=/tmp/bench_corn
    python -m caltransfer_jax.benchmark --config=configs/benchmark.py:tablet --workdir=/tmp/bench_tab
    python -m caltransfer_jax.benchmark --config=configs/benchmark.py:quick --workdir=/tmp/bench_q
    python -m caltransfer_jax.benchmark --config=configs/benchmark.py:custom \
        --config.dataset=PATH.toml --workdir=DIR

`corn`: all 6 instrument pairs × 4 properties, k ∈ {0, 5, 10, 20, 30, 50}, 5 random 60/20
splits × (10 random draws + Kennard–Stone). `tablet`: both pairs × 3 properties, split 0 the
original (calibrate + validate = pool of 195, test = 460), 4 more random splits of the same
sizes. `corn_model`: corn m5→mp6, all properties, 3 splits × (2 draws + Kennard–Stone), classical
and foundation-model rows (set `--config.model.init=EXPORT_DIR`). `tablet_model`: tablets
spec1→spec2, all properties, the original split and one random split × (2 draws +
Kennard–Stone), classical and model rows. `custom`: any dataset file
(`--config.dataset=PATH.toml`), every pair and property, k ∈ {0, 5, 10, 20} (larger k are
skipped where the pool is smaller). `quick`: corn m5→mp6 moisture,
2 splits × 2 draws, for CI. Override any field with
`--config.field=value`, e.g. `--config.workers=1`.
"""

import ml_collections

from caltransfer_jax.methods import registry
from configs import adapt

# The registry's default methods without the model rows (they need a pretrained export);
# costly ones (dwpds) run when named: --config.methods="('dwpds',)".
ALL_METHODS = registry.names(families=("reference", "classical"), default_only=True)
MODEL_METHODS = registry.names(families=("model",), default_only=True)


def get_config(arg: str = "corn") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset = "corn"  # a bundled data set (corn, tablets) or a dataset file (.toml)
    config.pairs = ()  # "source->target" strings; empty: every ordered pair of instruments
    config.properties = ()  # empty: every property of the data set
    config.ks = (0, 5, 10, 20, 30, 50)
    config.n_splits = 5
    config.test_fraction = 0.25  # corn: 60 pool / 20 test
    config.use_original_split = False  # split 0 = the data set's own split, where it has one
    config.n_draws = 10
    config.kennard_stone = True
    config.seed = 0
    config.preprocessing = "none"  # see classical.preprocessing.make_preprocessing
    config.pls = ml_collections.ConfigDict(
        {"max_components": 20, "n_folds": 10, "rule": "onesigma"}
    )
    config.conformal_alpha = 0.1
    # Few-shot rows: "split" (the method's own scores, else master CV residuals) or "cv+" (CV+
    # over the k transfer samples, 5 refits each: target-calibrated, slower; model rows too).
    config.intervals = "split"
    config.methods = ALL_METHODS
    config.workers = 2
    # Foundation-model rows (family "model"): adaptation settings of configs/adapt.py; they run
    # only when `methods` names them and `model.init` names a pretraining export.
    config.model = adapt.model_config()

    if arg == "corn":
        pass
    elif arg == "tablet":
        config.dataset = "tablets"
        config.use_original_split = True
    elif arg == "corn_model":
        config.pairs = ("m5->mp6",)
        config.methods = ALL_METHODS + MODEL_METHODS
        config.n_splits = 3
        config.n_draws = 2
    elif arg == "tablet_model":
        config.dataset = "tablets"
        config.use_original_split = True
        config.pairs = ("spec1->spec2",)
        config.methods = ALL_METHODS + MODEL_METHODS
        config.n_splits = 2
        config.n_draws = 2
    elif arg == "custom":
        config.dataset = ""  # set --config.dataset=PATH.toml (a dataset file)
        config.ks = (0, 5, 10, 20)
    elif arg == "quick":
        config.pairs = ("m5->mp6",)
        config.properties = ("moisture",)
        config.ks = (0, 5, 10, 30)
        config.n_splits = 2
        config.n_draws = 2
    else:
        raise ValueError(
            f"unknown benchmark variant {arg!r}; use corn, tablet, custom, corn_model, "
            "tablet_model or quick"
        )
    return config
