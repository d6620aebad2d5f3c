"""SPT on the merging ViT: :class:`~projects.spt.backbone.SPTViT`'s constructor and
folding over :class:`~projects.pyra.backbone.PYRAViT`'s merging options."""
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.registry import MODELS as SEG_MODELS

from ..pyra.backbone import PYRAViT
from ..spt.backbone import SPTViT


@SEG_MODELS.register_module()
@PRETRAIN_MODELS.register_module()
class SPTPYRAViT(SPTViT, PYRAViT):
    """PYRAViT (ToMe / PYRA merging) tuned with SPT: ``**kwargs`` are PYRAViT arguments
    (``merge_mode``, ``merge_schedule``, ...); the allocation is scored on the plain
    PYRAViT of the same arguments, and PYRA's generators train outside the budget."""

    PLAIN_TYPE = 'PYRAViT'
