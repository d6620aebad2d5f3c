"""SPTViT: the ComposableViT whose constructor builds the SPT structure from an
allocation file, so mmengine's optimizer and DDP wrapper see exactly the allocated
parameters (SPT with token merging: ``projects/combos/spt_pyra.py``).

Everything pretrained is frozen; trainable is what the modules declare: the sparse
deltas, the LoRA / Adapter modules and any other declared part (PYRA's generators,
which are part of PYRA and outside the SPT budget).
"""
from typing import Optional

from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.registry import MODELS as SEG_MODELS

from ..core.checkpoint.vit_loader import load_vit_checkpoint
from ..vit.backbone import ComposableViT
from .mixin import SPTMixin


class _PlainView:
    """What ``load_vit_checkpoint`` needs of the model, without the SPT tensors: the
    pretrained checkpoint is checked strictly against the plain ViT's key set."""

    def __init__(self, model: 'SPTViT') -> None:
        self.model = model
        self.interpolate_mode = model.interpolate_mode

    def state_dict(self):
        return self.model.plain_state_dict()

    def named_modules(self):
        return self.model.named_modules()

    def load_state_dict(self, state, strict=False):
        return self.model.load_state_dict(state, strict=False)


@SEG_MODELS.register_module()
@PRETRAIN_MODELS.register_module()
class SPTViT(SPTMixin, ComposableViT):
    """ComposableViT tuned with SPT (SPT-LoRA or SPT-Adapter).

    Args:
        spt_cfg: ``dict(allocation=<cache .pth>, budget=..., structured=dict(type=
            'lora'|'adapter', rank=8, scale=1.0, dropout=0.1), rule='thesis'|
            'official', structured_only=False, sensitivity=dict(num_samples=800,
            batch_size=32, train_mode=False))``. Only ``allocation`` and
            ``structured`` are read here; the rest drives :class:`SPTRunner`, which
            computes the allocation file when it is missing.
        **kwargs: ComposableViT arguments (``lora_cfg`` must be None; ``frozen`` is
            implied).
    """

    PLAIN_TYPE = 'ComposableViT'
    PLAIN_OVERRIDES = dict(lora_cfg=None, frozen=False)

    def __init__(self, spt_cfg: dict, lora_cfg: Optional[dict] = None,
                 frozen: bool = True, **kwargs) -> None:
        if lora_cfg:
            raise ValueError('SPTViT builds its own LoRA modules from the allocation; '
                             'drop lora_cfg.')
        if not frozen:
            raise ValueError('SPTViT always freezes the pretrained weights (frozen=True).')
        super().__init__(lora_cfg=None, frozen=False, **kwargs)
        self.frozen = True
        self._setup_spt(spt_cfg)

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load_vit_checkpoint(_PlainView(self), cfg['checkpoint'], prefix=cfg.get('prefix'),
                                strict=cfg.get('strict', True))
            self._is_init = True
            return
        super().init_weights()
