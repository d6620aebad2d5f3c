"""Tiny FASeg / Mask2Former head configs that run in well under a second on CPU
(a helper module: tests import it after putting this folder on sys.path)."""
import torch
from mmengine.config import ConfigDict
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

import projects.faseg  # noqa: F401  (registers FASegHead)

C = 32  # feature / decoder channels
NUM_CLASSES = 5


def tiny_head_cfg(**overrides) -> ConfigDict:
    """mmseg's Mask2Former R50 head, shrunk: 32 channels, 4 queries, 64 points."""
    attn = dict(embed_dims=C, num_heads=2, attn_drop=0.0, proj_drop=0.0,
                dropout_layer=None, batch_first=True)
    cfg = dict(
        type='FASegHead',
        in_channels=[8, 16, 24, 32],
        strides=[4, 8, 16, 32],
        feat_channels=C,
        out_channels=C,
        num_classes=NUM_CLASSES,
        num_queries=4,
        num_transformer_feat_level=3,
        align_corners=False,
        pixel_decoder=dict(
            type='mmdet.MSDeformAttnPixelDecoder',
            num_outs=3,
            norm_cfg=dict(type='GN', num_groups=8),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=1,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=C, num_heads=2, num_levels=3, num_points=2,
                                       im2col_step=64, dropout=0.0, batch_first=True,
                                       norm_cfg=None, init_cfg=None),
                    ffn_cfg=dict(embed_dims=C, feedforward_channels=64, num_fcs=2,
                                 ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True))),
                init_cfg=None),
            positional_encoding=dict(num_feats=C // 2, normalize=True),
            init_cfg=None),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=C // 2, normalize=True),
        transformer_decoder=dict(
            return_intermediate=True,
            num_layers=3,
            layer_cfg=dict(
                self_attn_cfg=dict(attn),
                cross_attn_cfg=dict(attn),
                ffn_cfg=dict(embed_dims=C, feedforward_channels=64, num_fcs=2,
                             act_cfg=dict(type='ReLU', inplace=True), ffn_drop=0.0,
                             dropout_layer=None, add_identity=True)),
            init_cfg=None),
        loss_cls=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0,
                      reduction='mean', class_weight=[1.0] * NUM_CLASSES + [0.1]),
        loss_mask=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True, reduction='mean',
                       loss_weight=5.0),
        loss_dice=dict(type='mmdet.DiceLoss', use_sigmoid=True, activate=True,
                       reduction='mean', naive_dice=True, eps=1.0, loss_weight=5.0),
        train_cfg=dict(
            num_points=64, oversample_ratio=3.0, importance_sample_ratio=0.75,
            assigner=dict(type='mmdet.HungarianAssigner', match_costs=[
                dict(type='mmdet.ClassificationCost', weight=2.0),
                dict(type='mmdet.CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
                dict(type='mmdet.DiceCost', weight=5.0, pred_act=True, eps=1.0)]),
            sampler=dict(type='mmdet.MaskPseudoSampler')))
    cfg.update(overrides)
    return ConfigDict(cfg)


def build_head(**overrides):
    from mmseg.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    head = MODELS.build(tiny_head_cfg(**overrides))
    head.init_weights()
    return head


def tiny_inputs(h: int = 64, w: int = 64, batch: int = 2, seed: int = 0):
    """Backbone-like features at strides 4..32 and samples with a random label map."""
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(batch, c, -(-h // s), -(-w // s), generator=g)
             for c, s in zip([8, 16, 24, 32], [4, 8, 16, 32])]
    samples = []
    for _ in range(batch):
        seg = torch.randint(0, NUM_CLASSES, (1, h // 16, w // 16), generator=g)
        seg = seg.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, :h, :w]
        seg[:, :4, :4] = 255
        sample = SegDataSample(gt_sem_seg=PixelData(data=seg))
        sample.set_metainfo(dict(img_shape=(h, w), pad_shape=(h, w), ori_shape=(h, w)))
        samples.append(sample)
    return feats, samples
