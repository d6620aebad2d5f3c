"""The SPT configs: every leaf parses with the required recipe, and each distinct
real-size model builds (from a synthetic allocation, no checkpoint) and runs."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.models import SwinTransformer

from projects.core.engine.model_builder import build_model_from_cfg
from projects.pyra import PYRAViT
from projects.spt.cache import make_key, save_allocation
from projects.spt.units import swin_units, vit_units

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
    assert backbone.type in ('SPTViT', 'SPTPYRAViT', 'SPTSwin') and not backbone.get('lora_cfg')
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
    spt = backbone_cfg['spt_cfg']
    if backbone_cfg['type'] == 'SPTSwin':
        kw = {k: v for k, v in backbone_cfg.items() if k in ('arch', 'img_size', 'window_size')}
        units = swin_units(SwinTransformer(**kw))
        pre = 'stages.0.blocks.'
        structured = [f'{pre}0.attn.w_msa.q.weight', f'{pre}0.ffn.layers.0.0.weight',
                      'stages.0.downsample.reduction.weight']
        full_vectors = ['norm3.weight']
        sparse = {f'{pre}1.attn.w_msa.proj.weight': torch.arange(0, 1000, 7),
                  f'{pre}1.attn.w_msa.k.weight': torch.tensor([3, 5]),
                  f'{pre}1.norm1.bias': torch.tensor([1, 2])}
    else:
        # the allocation only names blocks 0-1 and the final norm: a 2-block ViT of
        # the same widths has those units with the same sizes
        arch = dict(PYRAViT._arch_spec(backbone_cfg['arch']), num_layers=2)
        kw = {k: v for k, v in backbone_cfg.items()
              if k in ('img_size', 'patch_size', 'qkv_bias', 'layer_scale', 'final_norm')}
        units = vit_units(PYRAViT(arch=arch, **kw))
        structured = ['blocks.0.attn.q.weight', 'blocks.0.mlp.fc1.weight']
        full_vectors = ['norm.weight']
        sparse = {'blocks.1.attn.proj.weight': torch.arange(0, 1000, 7),
                  'blocks.1.attn.k.weight': torch.tensor([3, 5]),
                  'blocks.1.norm1.bias': torch.tensor([1, 2])}
    alloc = dict(budget=spt['budget'], tau=0, structured_type=spt['structured']['type'],
                 rank=spt['structured']['rank'], structured=structured,
                 full_vectors=full_vectors, sparse=sparse,
                 counts={}, numel={n: u.numel for n, u in units.items()}, cost={})
    alloc['key'], alloc['key_info'] = make_key('synthetic')
    save_allocation(str(path), alloc)


# one per distinct model: the VTAB tasks only differ in the head size
BUILDS = [p for p in LEAVES if 'vtab1k-cifar-' in p and '/vtab/' in p
          and ('0.2m' not in p and '0.8m' not in p) or '/embedded/' in p or '/seg/' in p]


def test_builds_cover_both_backbones_and_types():
    names = ' '.join(osp.basename(p) for p in BUILDS)
    for part in ('spt-lora-0.4m_vit-b16', 'spt-adapter-0.4m_vit-b16', 'spt-lora-0.43m_swin-b',
                 'spt-adapter-0.29m_swin-b', 'setr-pup'):
        assert part in names


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
        size = backbone.img_size if isinstance(backbone.img_size, int) else 224
        with torch.no_grad():
            logits = model(torch.randn(1, 3, size, size), mode='tensor')
        assert logits.shape == (1, cfg.model.head.num_classes)
        assert torch.isfinite(logits).all()
