"""Calibration transfer methods behind one contract: `fit(X_master, y, **transfer)`, `predict(X)`.

- `base`: the `TransferMethod` contract (what a method may see) and the master-model base class.
- `registry`: every method by name, with its family and whether it is zero-shot.
- `classical/`: preprocessing, PLS, SBC, DS/PDS, di-PLS, GCT-PLS, PFCE, recalibration, selection.
- `model/`: the pretrained model as transfer methods (frozen, test-time training, LoRA few-shot).

Importing this package loads neither JAX nor the pretraining machinery; `model/` loads JAX.
"""
