"""Code shared by several MMAdapt methods, one concern per sub-package:

- :mod:`.peft`: low-rank layers and folding them into the weights;
- :mod:`.checkpoint`: reading and converting pretrained checkpoints;
- :mod:`.datasets`: the VTAB-1k and embedded segmentation datasets;
- :mod:`.engine`: training-engine pieces (hooks, optimizer constructors, aux-loss
  models, schedules, the linear probe, building runners and models);
- :mod:`.deployment`: ONNX export checked against PyTorch;
- :mod:`.runtime`: compatibility patches for the pinned stack, applied at import;
- :mod:`.analysis`: measuring helpers of the benchmark tools.

The ViT itself and its part interfaces live in :mod:`projects.vit`.
"""
