"""DyT: Dynamic Tuning (Zhao et al., NeurIPS 2024) as parts of the one ViT block:
a token dispatcher in the MLP-gate slot, an adapter (or MoE-adapter) in the parallel
adapter slot, the token-rate loss as a backbone loss term and the complete-model
distillation pass in the classifier; hooks of our short-budget recipe (rate-target
annealing, eval calibration) and the report of the main job's DyT columns."""
from .adapters import DyTAdapter, DyTMoEAdapter
from .classifier import DyTImageClassifier
from .dispatcher import TokenDispatcher, gumbel_sigmoid
from .hooks import DyTCalibrateHook, DyTRateScheduleHook
from .losses import TokenRateLoss

__all__ = ['DyTAdapter', 'DyTCalibrateHook', 'DyTMoEAdapter', 'DyTImageClassifier',
           'DyTRateScheduleHook', 'TokenDispatcher', 'TokenRateLoss', 'gumbel_sigmoid']
