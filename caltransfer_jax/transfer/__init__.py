"""Adapting the pretrained spectral model to a new instrument: LoRA few-shot and TTT zero-shot."""
