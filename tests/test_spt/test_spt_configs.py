"""The SPT configs: every leaf parses with the required recipe, and each distinct
real-size model builds (from a synthetic allocation, no checkpoint) and runs."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from projects.core.model_builder import build_model_from_cfg
from projects.pyra import PYRAViT
from projects.spt.cache import make_key, save_allocation
from projects.spt.units import vit_units

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LEAVES = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', 'spt', '**', '*.py'),
                                     recursive=True) if '_base_' not in p)


def test_enough_leaves():
    assert len(LEAVES) >= 7


@pytest.mark.parametrize('path', LEAVES, ids=osp.basename)
def test_leaf_recipe(path):
    cfg = Config.fromfile(path)
    assert cfg.runner_type == 'SPTRunner'
    assert 'projects.spt' in cfg.custom_imports['imports']
    assert any(h['type'] == 'SPTAllocationHook' for h in cfg.custom_hooks)
    backbone = cfg.model.backbone
    assert backbone.type == 'SPTViT' and not backbone.get('lora_cfg')
    spt = backbone.spt_cfg
    assert spt.structured.type in ('lora', 'adapter') and spt.allocation.endswith('.pth')
    if '/vtab/' in path:  # the thesis / official VTAB-1k recipe
        assert 200_000 <= spt.budget <= 800_000
        assert cfg.train_dataloader.batch_size == 64
        opt = cfg.optim_wrapper.optimizer
        assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 1e-3, 1e-4)
        assert cfg.train_cfg.max_epochs == 100
        assert [s.type for s in cfg.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
        assert spt.sensitivity.num_samples == 800
    if '/seg/' in path:
        assert spt.structured_only and cfg.default_scope == 'mmseg'


def _synthetic_allocation(path, backbone_cfg):
    # the allocation only names blocks 0-1 and the final norm: a 2-block ViT of the
    # same widths has those units with the same sizes
    arch = dict(PYRAViT._arch_spec(backbone_cfg['arch']), num_layers=2)
    kw = {k: v for k, v in backbone_cfg.items() if k in ('img_size', 'patch_size', 'qkv_bias',
                                                         'layer_scale', 'final_norm')}
    units = vit_units(PYRAViT(arch=arch, **kw))
    spt = backbone_cfg['spt_cfg']
    alloc = dict(budget=spt['budget'], tau=0, structured_type=spt['structured']['type'],
                 rank=spt['structured']['rank'],
                 structured=['blocks.0.attn.q.weight', 'blocks.0.mlp.fc1.weight'],
                 full_vectors=['norm.weight'],
                 sparse={'blocks.1.attn.proj.weight': torch.arange(0, 1000, 7),
                         'blocks.1.attn.k.weight': torch.tensor([3, 5]),
                         'blocks.1.norm1.bias': torch.tensor([1, 2])},
                 counts={}, numel={n: u.numel for n, u in units.items()}, cost={})
    alloc['key'], alloc['key_info'] = make_key('synthetic')
    save_allocation(str(path), alloc)


BUILDS = [p for p in LEAVES if 'spt-lora-0.4m' in p or 'spt-adapter' in p
          or '/embedded/' in p or '/seg/' in p]


@pytest.mark.parametrize('path', BUILDS, ids=osp.basename)
def test_real_size_model_builds(path, tmp_path):
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone
    backbone.pop('init_cfg')
    backbone.spt_cfg.allocation = str(tmp_path / 'alloc.pth')
    _synthetic_allocation(backbone.spt_cfg.allocation, backbone.to_dict())
    model = build_model_from_cfg(cfg).eval()
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    spt = set(model.backbone.spt_parameters())
    assert trainable - spt == {n for n in trainable if '.pyra_' in n}
    assert len(spt) > 0 and all(p.requires_grad for p in model.decode_head.parameters()) \
        if cfg.default_scope == 'mmseg' else len(spt) > 0
    if cfg.default_scope == 'mmpretrain':
        size = backbone.img_size
        with torch.no_grad():
            logits = model(torch.randn(1, 3, size, size), mode='tensor')
        assert logits.shape == (1, cfg.model.head.num_classes)
        assert torch.isfinite(logits).all()
