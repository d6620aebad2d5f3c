"""DeiT's hard-label distillation, written once for every classifier that distils
(SPViT's fine-tuning from a teacher, ESTA's in-place distillation from the largest
anchor): the student's head loss is scaled by (1 - w) and
``loss_distill = w * CE(student logits, argmax teacher logits)`` is added, the
teacher's prediction taken without gradient."""
from typing import Dict

import torch.nn.functional as F
from torch import Tensor


class HardDistillMixin:
    """For classifiers: :meth:`hard_distill` turns the student's head losses into the
    distilled objective."""

    @staticmethod
    def hard_distill(losses: Dict[str, Tensor], student_logits: Tensor,
                     teacher_logits: Tensor, weight: float) -> Dict[str, Tensor]:
        target = teacher_logits.detach().argmax(-1)
        out = {k: (v * (1 - weight) if k == 'loss' else v) for k, v in losses.items()}
        out['loss_distill'] = weight * F.cross_entropy(student_logits, target)
        return out
