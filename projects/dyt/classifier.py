"""DyT's training objective for classification, as in the official code: the dynamic
forward's cross-entropy and token-rate loss, plus a complete-model forward of the same
network (every token through every gated part) with its own cross-entropy, and the KL
divergence that pulls the dynamic prediction towards the complete one (detached).
Each training step therefore runs the backbone twice. ``distill=False`` drops the
complete pass (the official segmentation code never had it).
"""
from typing import List

import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import Tensor

from ..core.engine.aux_loss_models import AuxLossImageClassifier, Losses


def complete_feat(model, inputs: Tensor):
    """The head input of the complete model (every token through every gated part:
    the backbone's ``gated=False`` forward), neck included."""
    feats = model.backbone.forward_with_context(inputs, gated=False)[0]
    return model.neck(feats) if model.with_neck else feats


@MODELS.register_module()
class DyTImageClassifier(AuxLossImageClassifier):

    def __init__(self, *args, distill: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.distill = distill

    def loss(self, inputs: Tensor, data_samples: List) -> Losses:
        feats, extra = self.extract_feat_and_losses(inputs)
        losses = self.add_backbone_losses(self.head.loss(feats, data_samples), extra)
        if not self.distill:
            return losses
        full = complete_feat(self, inputs)
        losses.update({f'{k}_complete': v for k, v in self.head.loss(full, data_samples).items()})
        dynamic, complete = self.head(feats), self.head(full)
        losses['loss_kl'] = F.kl_div(F.log_softmax(dynamic, -1),
                                     F.log_softmax(complete.detach(), -1),
                                     log_target=True, reduction='batchmean')
        return losses
