"""Backbone loss terms reach the loss dict of mmpretrain / mmseg models (issue 9)."""
import copy

import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmpretrain.structures import DataSample
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.structures import SegDataSample

from projects.vit.interfaces import TokenGate
from projects.vit.registry import VIT_LAYERS

TINY = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


@VIT_LAYERS.register_module(force=True)
class _L2Gate(TokenGate):
    """Adds the mean square of the tokens as ``loss_l2`` and logs a rate."""

    def __init__(self, dim, **kwargs):
        super().__init__()

    def forward(self, x, ctx):
        ctx = ctx.with_loss('loss_l2', x.pow(2).mean()).with_aux('rate', x.new_tensor(1.0))
        return None, ctx


def _backbone(with_gate: bool, out_type: str) -> dict:
    cfg = dict(type='PYRAViT', arch=TINY, img_size=32, patch_size=8, out_type=out_type,
               merge_mode='pyra', merge_schedule=[2, 2], lora_cfg=dict(rank=2), frozen=True)
    if with_gate:
        cfg['block_cfg'] = dict(mlp_gate=dict(type='_L2Gate'))
    return cfg


def _cls(type_: str, with_gate: bool = False):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return PRETRAIN_MODELS.build(dict(
            type=type_, backbone=_backbone(with_gate, 'cls_token'),
            head=dict(type='LinearClsHead', num_classes=5, in_channels=32)))


def _seg(type_: str, with_gate: bool = False):
    head = dict(type='FCNHead', in_channels=32, channels=16, num_convs=1, num_classes=4,
                norm_cfg=dict(type='BN'), loss_decode=dict(type='CrossEntropyLoss'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        return SEG_MODELS.build(dict(
            type=type_, backbone=_backbone(with_gate, 'featmap'), decode_head=head,
            auxiliary_head=dict(head, loss_decode=dict(type='CrossEntropyLoss',
                                                       loss_weight=0.4)),
            train_cfg=dict(), test_cfg=dict(mode='whole')))


def _cls_batch():
    return torch.randn(3, 3, 32, 32), [DataSample().set_gt_label(i) for i in (0, 3, 4)]


def _seg_batch():
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(32, 32), pad_shape=(32, 32)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 32, 32)))
        samples.append(s)
    return torch.randn(2, 3, 32, 32), samples


@pytest.mark.parametrize('build, batch, plain_type, aux_type', [
    (_cls, _cls_batch, 'ImageClassifier', 'AuxLossImageClassifier'),
    (_seg, _seg_batch, 'EncoderDecoder', 'AuxLossEncoderDecoder'),
])
def test_no_backbone_loss_trains_exactly_as_the_plain_model(build, batch, plain_type, aux_type):
    torch.manual_seed(0)
    plain = build(plain_type).train()
    aux = build(aux_type).train()
    aux.load_state_dict(plain.state_dict())
    inputs, samples = batch()
    torch.manual_seed(1)  # the same dropout draws in both
    want = plain.loss(inputs, copy.deepcopy(samples))
    torch.manual_seed(1)
    got = aux.loss(inputs, copy.deepcopy(samples))
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


@pytest.mark.parametrize('build, batch, aux_type', [
    (_cls, _cls_batch, 'AuxLossImageClassifier'),
    (_seg, _seg_batch, 'AuxLossEncoderDecoder'),
])
def test_backbone_loss_terms_are_added_logged_and_optimised(build, batch, aux_type):
    torch.manual_seed(0)
    model = build(aux_type, with_gate=True).train()
    inputs, samples = batch()
    losses = model.loss(inputs, samples)
    outs, ctx = model.backbone.forward_with_context(inputs)
    # two layers, each adding mean(x^2) of the tokens entering its MLP
    assert torch.allclose(losses['loss_l2'], sum(ctx.losses.values()))
    assert float(losses['loss_l2']) > 0
    total, log_vars = model.parse_losses(losses)
    heads = sum(v for k, v in losses.items() if 'loss' in k and k != 'loss_l2')
    torch.testing.assert_close(total, heads + losses['loss_l2'])
    assert 'loss_l2' in log_vars
    total.backward()
    lora = model.backbone.blocks[0].attn.qkv.lora_B['q']  # A's gradient is 0 while B = 0
    assert lora.grad is not None and lora.grad.abs().sum() > 0


def test_backbone_loss_named_like_a_head_loss_is_refused():
    model = _cls('AuxLossImageClassifier')
    with pytest.raises(KeyError, match='loss'):
        model.add_backbone_losses({'loss': torch.tensor(1.0)}, {'loss': torch.tensor(2.0)})
