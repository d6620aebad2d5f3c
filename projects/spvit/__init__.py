"""SPViT (Pan et al., TPAMI 2024): single-path search that prunes self-attention
layers into bottleneck convolutions (or skips them) and FFN hidden units, on the one
ViT of MMAdapt, then builds and fine-tunes the compact model."""
from .arch import OPS, SPViTArch, compact_overrides, load_arch
from .compact import SPViTConv, SPViTSkip
from .convert import compact_state_dict, derive_arch, fold_state_dict, read_backbone_state
from .distill import HardDistillImageClassifier
from .flops import SPViTFlopsLoss, arch_macs, supernet_macs
from .hook import SPViTSearchHook
from .optim import SPViTOptimWrapperConstructor
from .supernet import SPViTAttention, SPViTGatedMlp

__all__ = ['OPS', 'SPViTArch', 'compact_overrides', 'load_arch', 'SPViTConv', 'SPViTSkip',
           'compact_state_dict', 'derive_arch', 'fold_state_dict', 'read_backbone_state',
           'HardDistillImageClassifier', 'SPViTFlopsLoss', 'arch_macs',
           'supernet_macs', 'SPViTSearchHook', 'SPViTOptimWrapperConstructor',
           'SPViTAttention', 'SPViTGatedMlp']
