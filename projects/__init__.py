"""MMAdapt components for OpenMMLab.

Importing this package (configs do it with ``custom_imports=dict(imports=['projects'])``)
applies the runtime patches listed in :mod:`projects.core.runtime` (before any
checkpoint is loaded) and registers every component in the mmpretrain / mmseg /
mmengine registries.
"""
from .core import runtime  # noqa: F401  (import-time patches: see its docstring)
from .core import datasets  # noqa: F401
from .core.engine import aux_loss_models, hooks, trainable_only_optim  # noqa: F401
from . import vit  # noqa: F401
from . import dyt, esta, faseg, pyra, spt, spvit  # noqa: F401
from . import combos  # noqa: F401  (after the methods it combines)
