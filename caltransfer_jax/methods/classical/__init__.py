"""Classical calibration transfer as scikit-learn estimators (no JAX)."""
