"""Compositions of two methods, kept out of both method packages so that no method
package imports a sibling (``tests/test_core/test_import_graph.py``).

- :class:`SPTPYRAViT`: SPT's allocated structure on PYRAViT (SPT with token merging);
- :mod:`.train_cost`: seconds per training step and peak memory of every method, as
  its config trains it (``tools/analysis/benchmark.py --train``).
"""
from .spt_pyra import SPTPYRAViT

__all__ = ['SPTPYRAViT']
