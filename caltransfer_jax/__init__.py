"""caltransfer_jax: calibration transfer between spectrometers."""

__version__ = "0.1.0"
