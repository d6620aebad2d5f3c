"""The Segmenter configs of configs/pyra/seg (plain LoRA, ToMe, PYRA x ViT-S/16, ViT-B/16):
each builds and runs a forward pass at its 512 crop, and the mask-transformer head reads
the patch tokens of the last layer after the final norm -- for a merging backbone,
unmerged back to the 32 x 32 grid (every grid cell one of the remaining tokens).
(test_config_checkpoints.py loads their checkpoints.)"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from projects.core.engine.model_builder import build_model_from_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEGMENTER = sorted(glob.glob(osp.join(ROOT, 'configs', 'pyra', 'seg', '*segmenter*.py')))
METHODS = {'lora_': 'none', 'tome-lora-low_': 'tome', 'pyra-lora-low_': 'pyra'}
DIMS = {'vit-s16': 384, 'vit-b16': 768}


def test_every_method_and_backbone_has_a_config():
    names = [osp.basename(p) for p in SEGMENTER]
    for method in METHODS:
        for arch in DIMS:
            assert sum(n.startswith(method) and f'_{arch}_' in n for n in names) == 1, \
                (method, arch, names)


@torch.no_grad()
@pytest.mark.parametrize('path', SEGMENTER, ids=osp.basename)
def test_head_reads_the_unmerged_last_layer(path):
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    cfg.model.backbone.pop('init_cfg')
    model = build_model_from_cfg(cfg).eval()
    backbone, head = model.backbone, model.decode_head
    method = next(m for prefix, m in METHODS.items() if name.startswith(prefix))
    dims = next(d for arch, d in DIMS.items() if f'_{arch}_' in name)
    assert type(head).__name__ == 'SegmenterMaskTransformerHead'
    assert backbone.merge_mode == method and backbone.embed_dims == dims == head.in_channels
    assert (method == 'none') == (not any(backbone.merge_schedule))

    seen = {}
    backbone.norm.register_forward_hook(lambda m, i, o: seen.update(tokens=o))
    torch.manual_seed(0)
    x = torch.randn(1, 3, *cfg.crop_size)
    # EncoderDecoder's tensor forward is decode_head.forward(extract_feat(x)), in two
    # steps here to see the head's input
    feats = model.extract_feat(x)
    logits = head.forward(feats)
    grid = (cfg.crop_size[0] // 16, cfg.crop_size[1] // 16)
    assert logits.shape == (1, cfg.model.decode_head.num_classes, *grid)
    assert torch.isfinite(logits).all()

    (feat, ) = feats
    cells = feat[0].flatten(1).T  # (H*W, C), one row per grid cell
    final = seen['tokens'][0, 1:]  # patch tokens left after the last layer's norm
    assert cells.shape == (grid[0] * grid[1], dims)
    if method == 'none':
        torch.testing.assert_close(cells, final, rtol=0, atol=0)
        return
    assert final.shape[0] < cells.shape[0] // 10  # 'low' keeps a few tens of 1024
    # every cell is one remaining token, and every remaining token covers some cells
    owner = torch.cdist(cells, final).argmin(1)
    torch.testing.assert_close(cells, final[owner], rtol=0, atol=0)
    assert owner.unique().numel() == final.shape[0]
