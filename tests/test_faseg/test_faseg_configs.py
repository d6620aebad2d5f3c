"""Every configs/faseg config parses as a FASeg model; the real-size ones build and
the R50 one runs a small forward; the tiny one is also trained in test_faseg_train."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmseg.structures import SegDataSample

from projects.core.engine.model_builder import build_model_from_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'faseg', '*.py')))
REAL_SIZE = [p for p in CONFIGS if 'embedded' not in p]


def test_enough_configs():
    # R50, Swin-T/B/L x ADE20K/Cityscapes, PYRA ViT-B/16, tiny
    assert len(CONFIGS) >= 10 and len(REAL_SIZE) >= 9


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_parses(path):
    cfg = Config.fromfile(path)
    head = cfg.model.decode_head
    assert cfg.default_scope == 'mmseg' and cfg.model.type == 'EncoderDecoder'
    assert head.type == 'FASegHead' and head.with_dfpq and head.with_hrca
    # the official code's PEG placement (inside the deformable encoder) in every config
    assert head.key_pos_type == 'conditional' and head.key_pos_placement == 'encoder'
    assert 'projects.faseg' in cfg.custom_imports.imports
    assert len(head.loss_cls.class_weight) == head.num_classes + 1
    assert cfg.model.data_preprocessor.size == cfg.crop_size
    if path in REAL_SIZE:
        assert head.num_queries == 100 and head.transformer_decoder.num_layers == 13
        assert head.attn_mask_threshold == 0.15 and head.key_pos_type == 'conditional'
        assert cfg.optim_wrapper.optimizer.lr == 1e-4
        assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult == 0.1
        assert cfg.param_scheduler[0].end == cfg.train_cfg.max_iters
        assert cfg.train_cfg.max_iters == (160000 if 'ade20k' in path else 90000)


@pytest.mark.parametrize('path', REAL_SIZE, ids=osp.basename)
def test_real_size_builds(path):
    cfg = Config.fromfile(path)
    cfg.model.backbone.pop('init_cfg', None)
    model = build_model_from_cfg(cfg)
    head = model.decode_head
    assert head.layer_levels.count(-1) == 3 and len(head.transformer_decoder.layers) == 13
    assert head.pixel_decoder.num_outs == 4
    assert type(head.pixel_decoder).__name__ == 'EncoderPEGPixelDecoder'
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    # thesis Table 5.1: R50 51M, Swin-T 54M, Swin-B 113M, Swin-L 222M
    for key, expected in (('r50', 51), ('swin-t', 54), ('swin-b', 113), ('swin-l', 222)):
        if f'faseg_{key}' in osp.basename(path):
            assert abs(n_params - expected) < 1.5, n_params


def test_r50_forward_small_input():
    cfg = Config.fromfile(osp.join(CONFIGS[0].rsplit('/', 1)[0],
                                   'faseg_r50_8xb2-160k_ade20k-512x512.py'))
    cfg.model.backbone.pop('init_cfg', None)
    model = build_model_from_cfg(cfg).eval()
    sample = SegDataSample(metainfo=dict(img_shape=(96, 128), pad_shape=(96, 128),
                                         ori_shape=(96, 128)))
    with torch.no_grad():
        out, = model(torch.randn(1, 3, 96, 128), [sample], mode='predict')
    assert out.seg_logits.data.shape == (150, 96, 128)
    assert torch.isfinite(out.seg_logits.data).all()
    assert out.pred_sem_seg.data.max() < 150
