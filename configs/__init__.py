"""ml_collections configurations, one module per command (`--config=configs/NAME.py[:variant]`).

A package so that configurations share parts by import (`from configs import adapt`), e.g. the
model rows of the benchmark take their settings from `adapt.model_config()`.
"""
