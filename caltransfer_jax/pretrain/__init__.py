"""Pretraining: the train loop, its input pipeline and held-out evaluation, checkpoints, sharding
and metric writing. Nothing outside this package imports it, so a transfer never loads it.
"""
