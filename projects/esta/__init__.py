"""ESTA: efficient stitchable task adaptation (thesis ch. 3) on the one ViT --
StitchedViT (anchors are ComposableViTs), PST (stitch-agnostic LoRA + stitch-specific
biases + low-rank stitching layers), a head per anchor, importance-guided stitch
sampling (SNIP of each stitch's own loss) and one-stage deployment of the top-scored
(or most accurate on val) stitch per FLOPs interval."""
from .backbone import StitchedViT, TapProjection
from .classifier import ESTADistributedDataParallel, StitchedImageClassifier
from .hooks import AnchorHeadsProbeHook, ESTASamplingHook, StitchInitHook
from .layers import StitchBiasAttention, StitchingLayer, least_squares
from .sampler import StitchSampler
from .space import Stitch, StitchSpace, paired_stitching

__all__ = ['StitchedViT', 'TapProjection', 'StitchedImageClassifier',
           'ESTADistributedDataParallel', 'ESTASamplingHook', 'AnchorHeadsProbeHook',
           'StitchInitHook', 'StitchBiasAttention', 'StitchingLayer', 'least_squares',
           'StitchSampler', 'Stitch', 'StitchSpace', 'paired_stitching']
