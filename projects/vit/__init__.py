"""The method-free ViT of MMAdapt: :class:`ComposableViT`, its block, the plain parts,
the slot interfaces every part implements, the per-forward context and the part
registry. It imports no method package; methods add parts through ``VIT_LAYERS``."""
from .backbone import ARCH_ZOO, ComposableViT, arch_spec
from .block import Block
from .context import TokenContext, TokenGroups, unmerge
from .interfaces import (Adapter, AttentionPart, AuxLossTerm, GateDecision, MlpPart,
                         Part, TokenGate, TokenReducer)
from .parts import Attention, LayerScale, Mlp
from .registry import VIT_LAYERS, build_layer

__all__ = ['ARCH_ZOO', 'ComposableViT', 'arch_spec', 'Block', 'TokenContext', 'TokenGroups',
           'unmerge', 'Adapter', 'AttentionPart', 'AuxLossTerm', 'GateDecision', 'MlpPart',
           'Part', 'TokenGate', 'TokenReducer', 'Attention', 'LayerScale', 'Mlp',
           'VIT_LAYERS', 'build_layer']
