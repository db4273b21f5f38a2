"""A saved calibration transfer: fit once (any classical or model method), save, load, predict
new target spectra with intervals. `python -m caltransfer_jax.transfer fit|predict`."""

from caltransfer_jax.transfer.estimator import CalibrationTransfer

__all__ = ["CalibrationTransfer"]
