"""MMAdapt components for OpenMMLab.

Importing this package (configs do it with ``custom_imports=dict(imports=['projects'])``)
applies the compatibility fixes for the pinned stack and registers every component in
the mmpretrain / mmseg / mmengine registries.
"""
from .core import compat  # noqa: F401  (must run before any checkpoint is loaded)
from .core import aux_loss_models, datasets, hooks  # noqa: F401
from . import dyt, faseg, pyra, spt  # noqa: F401
