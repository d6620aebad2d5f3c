"""Classifier and segmentor whose backbone may add loss terms (a FLOPs loss, a
token-rate loss) to the model's loss dict.

A backbone with ``forward_with_losses(x) -> (outputs, {name: tensor})`` (PYRAViT and its
subclasses) contributes its terms under their own names (``loss_flops``,
``loss_token``, ...), so mmengine logs them and sums every key containing 'loss' into the
objective, with any head. Prediction is unchanged. A backbone that returns no term, or
has no such method, trains exactly as with mmpretrain's ``ImageClassifier`` / mmseg's
``EncoderDecoder``; configs switch by ``type`` only.
"""
from typing import Dict, List, Tuple

from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS as SEG_MODELS
from torch import Tensor

Losses = Dict[str, Tensor]


class _BackboneLosses:
    """What both models share: features plus the backbone's loss terms."""

    def extract_feat_and_losses(self, inputs: Tensor) -> Tuple[Tuple[Tensor, ...], Losses]:
        forward = getattr(self.backbone, 'forward_with_losses', None)
        feats, extra = forward(inputs) if forward else (self.backbone(inputs), {})
        if self.with_neck:
            feats = self.neck(feats)
        return feats, extra

    @staticmethod
    def add_backbone_losses(losses: Losses, extra: Losses) -> Losses:
        clash = sorted(set(losses) & set(extra))
        if clash:
            raise KeyError(f'backbone loss terms {clash} have the names of head losses; '
                           'rename them in the backbone.')
        losses.update(extra)
        return losses


@PRETRAIN_MODELS.register_module()
class AuxLossImageClassifier(_BackboneLosses, ImageClassifier):
    """mmpretrain's ``ImageClassifier`` plus the backbone's loss terms."""

    def loss(self, inputs: Tensor, data_samples: List) -> Losses:
        feats, extra = self.extract_feat_and_losses(inputs)
        return self.add_backbone_losses(self.head.loss(feats, data_samples), extra)


@SEG_MODELS.register_module()
class AuxLossEncoderDecoder(_BackboneLosses, EncoderDecoder):
    """mmseg's ``EncoderDecoder`` plus the backbone's loss terms."""

    def loss(self, inputs: Tensor, data_samples: List) -> Losses:
        feats, extra = self.extract_feat_and_losses(inputs)
        losses = self._decode_head_forward_train(feats, data_samples)
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(feats, data_samples))
        return self.add_backbone_losses(losses, extra)
