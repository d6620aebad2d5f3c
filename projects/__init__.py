"""MMAdapt components for OpenMMLab.

Importing this package (configs do it with ``custom_imports=dict(imports=['projects'])``)
applies the compatibility fixes for the pinned stack, makes mmengine's checkpoint
writes crash-safe (``core/atomic_checkpoints.py``) and registers every component in
the mmpretrain / mmseg / mmengine registries.
"""
from .core import compat  # noqa: F401  (must run before any checkpoint is loaded)
from .core import runner_compat  # noqa: F401  (Runner.from_cfg fits configs to CPU)
from .core import atomic_checkpoints  # noqa: F401  (crash-safe checkpoint writes)
from .core import aux_loss_models, datasets, hooks, trainable_only_optim  # noqa: F401
from . import dyt, esta, faseg, pyra, spt, spvit  # noqa: F401
