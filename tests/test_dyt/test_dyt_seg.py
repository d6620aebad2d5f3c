"""The DyT ADE20K config trains with the rate loss in mmseg's objective and predicts by
slide inference, at a small crop (the real ViT-B/16 and heads, 64 px instead of 512)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from projects.core.engine.model_builder import build_model_from_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/dyt/seg/dyt-mlp-r0.5_upernet_vit-b16_8xb2-160k_ade20k-512x512.py')
CROP = 64


@pytest.fixture(scope='module')
def model():
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.pop('init_cfg')
    cfg.model.backbone.img_size = CROP
    cfg.model.data_preprocessor.size = (CROP, CROP)
    cfg.model.test_cfg = dict(mode='slide', crop_size=(CROP, CROP), stride=(32, 32))
    torch.manual_seed(0)
    return build_model_from_cfg(cfg)


def test_config_is_the_official_recipe():
    cfg = Config.fromfile(CONFIG)
    bb = cfg.model.backbone
    assert cfg.model.type == 'AuxLossEncoderDecoder'
    assert (bb.img_size, bb.out_indices, bb.final_norm, bb.drop_path_rate) == \
        ((512, 512), (3, 5, 7, 11), False, 0.1)
    assert bb.block_cfg.adapter.bottleneck == 64 and bb.block_cfg.adapter.scale == 0.1
    assert cfg.model.decode_head.channels == 768 and cfg.model.decode_head.num_classes == 150
    assert cfg.model.data_preprocessor.mean == [127.5] * 3 == cfg.model.data_preprocessor.std
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert [s.end for s in cfg.param_scheduler] == [1500, 160000]
    assert cfg.param_scheduler[0].start_factor == 1e-6
    assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size == 2
    assert cfg.model.test_cfg.stride == (341, 341)


def test_training_step_sums_the_token_loss_and_trains_the_dispatchers(model):
    model.train()
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(2):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, CROP, CROP), generator=gen))
        samples.append(sample)
    data = dict(inputs=[torch.randint(0, 256, (3, CROP, CROP), dtype=torch.uint8,
                                      generator=gen) for _ in range(2)],
                data_samples=samples)
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    assert 'loss_token' in losses and torch.isfinite(losses['loss_token'])
    assert 0 < losses['token_rate'] < 1  # training masks are sampled, not all-on / all-off
    assert torch.allclose(losses['loss_token'], 2.0 * (losses['token_rate'] - 0.5) ** 2)
    total, log_vars = model.parse_losses(losses)
    heads = sum(v for k, v in losses.items() if 'loss' in k and k != 'loss_token')
    assert torch.allclose(total - heads, losses['loss_token'])
    assert float(log_vars['loss_token']) == pytest.approx(losses['loss_token'].item())
    model.zero_grad()
    losses['loss_token'].backward()
    gate = model.backbone.blocks[0].mlp_gate.score.weight
    assert gate.grad is not None and gate.grad.abs().sum() > 0  # through the straight-through mask
    assert not model.backbone.blocks[0].attn.qkv.weight.requires_grad  # frozen backbone


def test_slide_predict_on_a_non_square_image(model):
    model.eval()
    crops = []
    handle = model.backbone.register_forward_pre_hook(
        lambda m, args: crops.append(tuple(args[0].shape)))
    try:
        image = torch.randint(0, 256, (3, CROP, 96), dtype=torch.uint8)
        sample = SegDataSample(metainfo=dict(img_shape=(CROP, 96), ori_shape=(CROP, 96)))
        with torch.no_grad():
            (out,) = model.test_step(dict(inputs=[image], data_samples=[sample]))
    finally:
        handle.remove()
    assert crops == [(1, 3, CROP, CROP)] * 2  # two 64-px windows, stride 32, across 96 px
    assert out.seg_logits.data.shape == (150, CROP, 96)
    assert out.pred_sem_seg.data.shape == (1, CROP, 96)
    assert torch.isfinite(out.seg_logits.data).all()
