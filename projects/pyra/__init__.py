"""PYRA / ToMe token merging for ViTs (classification and dense prediction)."""
from .backbone import PYRAViT
from .pyra_modulation import PYRAModulation
from .token_merge import bipartite_soft_matching, merge_weighted, unmerge

__all__ = ['PYRAViT', 'PYRAModulation', 'bipartite_soft_matching', 'merge_weighted',
           'unmerge']
