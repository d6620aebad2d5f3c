"""Hard distillation from a teacher classifier (DeiT's ``distillation_type='hard'``
as SPViT fine-tunes with it): loss = (1 - alpha) head loss + alpha CE(student logits,
argmax teacher). mmpretrain has no such classifier; the student has no distillation
token (the official SPViT student uses its one head).

The teacher is built from ``teacher`` (any mmpretrain model config, e.g.
``dict(type='TimmClassifier', model_name='regnety_160', ...)``) and loaded from
``teacher_ckpt``; it is kept outside the module tree, so student checkpoints stay the
student's and load strictly.
"""
from typing import List, Optional

import torch
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS
from torch import Tensor

from ..core.engine.aux_loss_models import AuxLossImageClassifier, Losses
from ..core.engine.distill import HardDistillMixin


@MODELS.register_module()
class HardDistillImageClassifier(HardDistillMixin, AuxLossImageClassifier):

    def __init__(self, *args, teacher: Optional[dict] = None,
                 teacher_ckpt: Optional[str] = None, teacher_ckpt_prefix: str = '',
                 alpha: float = 0.5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0 <= alpha <= 1:
            raise ValueError(f'HardDistillImageClassifier: alpha must be in [0, 1], got {alpha}.')
        self.alpha = alpha
        self._teacher_cfg, self._teacher_ckpt = teacher, teacher_ckpt
        self._prefix = teacher_ckpt_prefix
        object.__setattr__(self, '_teacher', None)

    def teacher(self):
        if self._teacher is None:
            if self._teacher_cfg is None:
                raise ValueError('HardDistillImageClassifier: no teacher config given.')
            model = MODELS.build(self._teacher_cfg)
            if self._teacher_ckpt:
                load_checkpoint(model, self._teacher_ckpt, map_location='cpu', strict=True,
                                revise_keys=[(r'^', self._prefix)] if self._prefix else
                                [(r'^module\\.', '')])
            model.eval().requires_grad_(False)
            object.__setattr__(self, '_teacher', model)
        return self._teacher

    def loss(self, inputs: Tensor, data_samples: List) -> Losses:
        feats, extra = self.extract_feat_and_losses(inputs)
        losses = self.add_backbone_losses(self.head.loss(feats, data_samples), extra)
        if self._teacher_cfg is None or self.alpha == 0:
            return losses
        teacher = self.teacher().to(inputs.device)
        with torch.no_grad():
            teacher_logits = teacher(inputs, mode='tensor')
        return self.hard_distill(losses, self.head(feats), teacher_logits, self.alpha)
