"""ESTA's classification objective (thesis §3.4.2): every iteration trains the sampled
stitch and the largest anchor; the anchor's cross-entropy trains it as usual, and the
stitch learns from the labels and, by in-place hard-label distillation, from the
anchor's predicted class (DeiT's hard distillation, ``distill_weight`` 0.5 each).
When the sampled stitch is the largest anchor, one forward only."""
from typing import List

import torch
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS
from torch import Tensor

from ..core.engine.distill import HardDistillMixin


@MODELS.register_module()
class StitchedImageClassifier(HardDistillMixin, ImageClassifier):

    def __init__(self, *args, distill: bool = True, distill_weight: float = 0.5,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0 <= distill_weight <= 1:
            raise ValueError(f'distill_weight must be in [0, 1], got {distill_weight}.')
        self.distill = distill
        self.distill_weight = distill_weight

    def extract_stitch_feat(self, inputs: Tensor, stitch: int):
        """What the head reads for ``stitch`` (backbone path + neck)."""
        feats = self.backbone(inputs, stitch=stitch)
        return self.neck(feats) if self.with_neck else feats

    def loss(self, inputs: Tensor, data_samples: List) -> dict:
        stitch, teacher = self.backbone.stitch, self.backbone.teacher_stitch
        feats = self.extract_stitch_feat(inputs, stitch)
        if not self.distill or stitch == teacher:
            return self.head.loss(feats, data_samples)
        teacher_feats = self.extract_stitch_feat(inputs, teacher)
        losses = {f'{k}_teacher': v for k, v in self.head.loss(teacher_feats, data_samples).items()}
        with torch.no_grad():
            teacher_logits = self.head(teacher_feats)
        losses.update(self.hard_distill(self.head.loss(feats, data_samples), self.head(feats),
                                        teacher_logits, self.distill_weight))
        return losses
