"""SPViT inside an mmseg EncoderDecoder: loss_flops joins the segmentation losses, and
the compact backbone keeps its taps and runs under slide inference."""
import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from projects.spvit import SPViTArch, compact_overrides

from .common import SEARCH, TINY


def _segmentor(block_cfg=None, block_overrides=(), aux_losses=()):
    from mmseg.registry import MODELS
    cfg = dict(
        type='AuxLossEncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.0] * 3, std=[1.0] * 3,
                               size=(32, 32)),
        backbone=dict(type='PYRAViT', arch=TINY, img_size=32, patch_size=8,
                      out_type='featmap', out_indices=(1, 3), final_norm=False,
                      prop_attn=False, block_cfg=block_cfg,
                      block_overrides=list(block_overrides), aux_losses=list(aux_losses)),
        decode_head=dict(type='FCNHead', in_channels=32, in_index=1, channels=16,
                         num_convs=1, num_classes=3, concat_input=False),
        test_cfg=ConfigDict(mode='slide', crop_size=(32, 32), stride=(24, 24)))
    return MODELS.build(cfg)


def _samples(n, h, w):
    out = []
    for _ in range(n):
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, h, w)))
        out.append(s)
    return out


def test_search_loss_in_segmentor_and_compact_slide_inference():
    with DefaultScope.overwrite_default_scope('mmseg'):
        search = _segmentor(SEARCH, aux_losses=[dict(type='SPViTFlopsLoss', target=0.3,
                                                     unit=1e6)])
        search.train()
        losses = search.loss(torch.randn(2, 3, 32, 32), _samples(2, 32, 32))
        assert {'loss_flops', 'decode.loss_ce'} <= set(losses)
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        assert search.backbone.blocks[2].attn.theta.grad is not None

        arch = SPViTArch(ops=['conv3x3', 'skip', 'conv1x1', 'msa'], ffn=[8, 0, 64, 3])
        compact = _segmentor(block_overrides=compact_overrides(arch)).eval()
        feats = compact.extract_feat(torch.randn(1, 3, 40, 56))
        assert [tuple(f.shape) for f in feats] == [(1, 32, 5, 7), (1, 32, 5, 7)]
        with torch.no_grad():
            pred = compact.predict(torch.randn(1, 3, 40, 56), _samples(1, 40, 56))
        assert pred[0].pred_sem_seg.data.shape == (1, 40, 56)
