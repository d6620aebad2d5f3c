"""Datasets: importing this package registers them in the mmseg / mmpretrain registries."""
from .embedded_seg import (CLASSES as EMBEDDED_SEG_CLASSES, EmbeddedSegDataset,
                           LABEL_MAPS as EMBEDDED_SEG_LABEL_MAPS,
                           PALETTE as EMBEDDED_SEG_PALETTE)
from .vtab1k import (FASHION_MNIST_CLASSES, VTAB1K_GROUPS, VTAB1K_NUM_CLASSES,
                     VTAB1K_SPLITS, VTAB1k, resolve_task, vtab1k_classes)

__all__ = [
    'EmbeddedSegDataset', 'EMBEDDED_SEG_CLASSES', 'EMBEDDED_SEG_LABEL_MAPS',
    'EMBEDDED_SEG_PALETTE', 'VTAB1k', 'VTAB1K_NUM_CLASSES', 'VTAB1K_GROUPS',
    'VTAB1K_SPLITS', 'FASHION_MNIST_CLASSES', 'resolve_task', 'vtab1k_classes'
]
