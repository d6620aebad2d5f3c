"""PYRA / ToMe token merging for ViTs (classification and dense prediction)."""
from .backbone import PYRAViT
from .merger import TokenDropper, TokenMerger
from .pyra_modulation import PYRAModulation
from .token_merge import bipartite_soft_matching, merge_weighted, unmerge

__all__ = ['PYRAViT', 'PYRAModulation', 'TokenMerger', 'TokenDropper', 'bipartite_soft_matching', 'merge_weighted',
           'unmerge']
