"""The pretrained spectral model as transfer methods: frozen features, test-time training
(zero-shot) and LoRA few-shot, on the model's own grid."""
