"""Compositions of two methods, kept out of both method packages so that no method
package imports a sibling (``tests/test_core/test_import_graph.py``).

- :class:`SPTPYRAViT`: SPT's allocated structure on PYRAViT (SPT with token merging).
"""
from .spt_pyra import SPTPYRAViT

__all__ = ['SPTPYRAViT']
