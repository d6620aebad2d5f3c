"""Hard distillation (DeiT / SPViT fine-tuning): 0.5 CE(gt) + 0.5 CE(argmax teacher),
with the teacher outside the student's state dict."""
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from .common import IMG, TINY


def _classifier(kind='AuxLossImageClassifier', **kw):
    from mmpretrain.registry import MODELS
    return MODELS.build(dict(
        type=kind, backbone=dict(type='PYRAViT', arch=TINY, img_size=IMG, patch_size=8),
        neck=None, head=dict(type='LinearClsHead', num_classes=3, in_channels=32), **kw))


def test_hard_distillation_loss(tmp_path):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        teacher = _classifier()
        ckpt = str(tmp_path / 'teacher.pth')
        torch.save({'state_dict': teacher.state_dict()}, ckpt)
        teacher_cfg = dict(type='ImageClassifier',
                           backbone=dict(type='PYRAViT', arch=TINY, img_size=IMG, patch_size=8),
                           neck=None, head=dict(type='LinearClsHead', num_classes=3,
                                                in_channels=32))
        student = _classifier('HardDistillImageClassifier', teacher=teacher_cfg,
                              teacher_ckpt=ckpt, alpha=0.5)
        assert not any(k.startswith('_teacher') for k in student.state_dict())
        x = torch.randn(4, 3, *IMG)
        samples = [DataSample().set_gt_label(i % 3) for i in range(4)]
        losses = student.loss(x, samples)
        with torch.no_grad():
            target = teacher(x, mode='tensor').argmax(-1)
            logits = student(x, mode='tensor')
            gt = F.cross_entropy(logits, torch.arange(4) % 3)
    torch.testing.assert_close(losses['loss_distill'].detach(),
                               0.5 * F.cross_entropy(logits, target))
    torch.testing.assert_close(losses['loss'].detach(), 0.5 * gt)
