"""Kept for existing imports: MMAdapt's one cost model is :mod:`projects.vit.cost`.

``vit_macs(model, img_hw)`` is :func:`~projects.vit.cost.model_macs` (analytic, every
token, the merged token counts) and ``executed_macs(model, images)`` the count of what
one eval forward ran (gate masks, packed attention, merged tokens).
"""
from ..vit.cost import executed_macs, model_macs

vit_macs = model_macs

__all__ = ['executed_macs', 'model_macs', 'vit_macs']
