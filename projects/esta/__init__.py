"""ESTA: efficient stitchable task adaptation (thesis ch. 3) on the one ViT --
StitchedViT (anchors are ComposableViTs), PST (stitch-agnostic LoRA + stitch-specific
biases + low-rank stitching layers), importance-guided stitch sampling and one-stage
deployment of the top-scored stitch per FLOPs interval."""
from .backbone import StitchedViT, TapProjection
from .classifier import StitchedImageClassifier
from .hooks import ESTASamplingHook, StitchInitHook
from .layers import StitchBiasAttention, StitchingLayer, least_squares
from .sampler import StitchSampler
from .space import Stitch, StitchSpace, paired_stitching

__all__ = ['StitchedViT', 'TapProjection', 'StitchedImageClassifier', 'ESTASamplingHook',
           'StitchInitHook', 'StitchBiasAttention', 'StitchingLayer', 'least_squares',
           'StitchSampler', 'Stitch', 'StitchSpace', 'paired_stitching']
