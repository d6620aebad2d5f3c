"""Every config parses; the generated VTAB-1k leaves are up to date; every distinct
real-size model builds and runs a forward pass on CPU (no data, no checkpoint)."""
import glob
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from projects.core.engine.model_builder import build_model_from_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'misc'))
LEAVES = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                if '_base_' not in p)


def test_enough_configs_collected():
    # guards against a vacuous pass if the glob breaks
    assert len(LEAVES) >= 190


def test_vtab_leaves_match_generator():
    from generate_vtab1k_configs import OUT_DIR, expected_files
    files = expected_files()
    assert len(files) == 19 * 2 * 5
    for name, text in files.items():
        path = osp.join(OUT_DIR, name)
        assert osp.isfile(path), f'{name} missing: run tools/misc/generate_vtab1k_configs.py'
        with open(path) as f:
            assert f.read() == text, f'{name} is stale: re-run the generator'


def test_spt_vtab_leaves_match_generator():
    from generate_vtab1k_configs import SPT_OUT_DIR, expected_spt_files
    files = expected_spt_files()
    assert len(files) == 19 * 4 + 2
    assert sorted(files) == sorted(osp.basename(p) for p in glob.glob(
        osp.join(SPT_OUT_DIR, '*.py'))), 'configs/spt/vtab differs: re-run the generator'
    for name, text in files.items():
        with open(osp.join(SPT_OUT_DIR, name)) as f:
            assert f.read() == text, f'{name} is stale: re-run the generator'


def test_dyt_vtab_leaves_match_generator():
    from generate_vtab1k_configs import DYT_OUT_DIR, expected_dyt_files
    files = expected_dyt_files()
    assert len(files) == 19 + 1  # MLP dispatch on every task, MoE-adapter on cifar
    assert sorted(files) == sorted(osp.basename(p) for p in glob.glob(
        osp.join(DYT_OUT_DIR, '*.py'))), 'configs/dyt/vtab1k differs: re-run the generator'
    for name, text in files.items():
        with open(osp.join(DYT_OUT_DIR, name)) as f:
            assert f.read() == text, f'{name} is stale: re-run the generator'


@pytest.mark.parametrize('path', LEAVES, ids=lambda p: osp.relpath(p, ROOT))
def test_config_parses(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope in ('mmpretrain', 'mmseg')
    # the model type is registered where the config's scope builds it
    if cfg.default_scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    else:
        from mmseg.registry import MODELS
    assert MODELS.get(cfg.model.type) is not None, (path, cfg.model.type)
    if 'vtab1k-' in path:
        from projects.core.datasets import VTAB1K_NUM_CLASSES
        task = cfg.train_dataloader.dataset.task
        assert cfg.model.head.num_classes == VTAB1K_NUM_CLASSES[task]
        assert cfg.data_preprocessor.num_classes == VTAB1K_NUM_CLASSES[task]


def _one_per_model(pattern: str) -> list:
    """One config per distinct model (VTAB tasks only differ in the head size)."""
    picked = {}
    for p in LEAVES:
        if pattern in p:
            key = osp.basename(p).split('_1xb')[0] if 'vtab1k' in p else p
            picked.setdefault(key, p)
    return sorted(picked.values())


@pytest.mark.parametrize('path', _one_per_model('/vtab1k/'), ids=osp.basename)
def test_real_size_classifier_forward(path):
    cfg = Config.fromfile(path)
    cfg.model.backbone.pop('init_cfg', None)  # (a stitched ViT keeps one per anchor)
    model = build_model_from_cfg(cfg).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 224, 224), mode='tensor')
    assert logits.shape == (1, cfg.model.head.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize('path', [p for p in LEAVES if ('/pyra/seg/' in p and 'pyra-lora' in p)
                                  or '/dyt/seg/' in p],
                         ids=osp.basename)
def test_real_size_segmentor_forward(path):
    cfg = Config.fromfile(path)
    cfg.model.backbone.pop('init_cfg', None)  # (a stitched ViT keeps one per anchor)
    model = build_model_from_cfg(cfg).eval()
    h, w = cfg.crop_size
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, h, w))
        logits = model.decode_head(feats)
    scales = (1, ) if 'segmenter' in path else (4, 2, 1, 0.5)  # Segmenter: one 1/16 map
    assert all(f.shape[-2:] == (h // 16 * s, w // 16 * s) for f, s in zip(feats, scales)) \
        or 'setr' in path
    assert logits.shape[:2] == (1, cfg.model.decode_head.num_classes)
    assert torch.isfinite(logits).all()
