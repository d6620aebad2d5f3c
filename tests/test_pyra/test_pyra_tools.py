"""Deployment fold tool, merge visualisation and benchmark tool on tiny models."""
import os.path as osp
import subprocess
import sys

import numpy as np
import torch
from mmengine.config import Config

from projects.core.engine.model_builder import build_model_from_cfg
from projects.pyra import PYRAViT

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CLS = osp.join(ROOT, 'tests', 'data', 'configs',
                    'pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-mnist-56px.py')
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))


def _tiny_cfg(tmp_path, lora: bool):
    cfg = Config.fromfile(TINY_CLS)
    cfg.model.backbone.update(merge_mode='pyra', merge_schedule=[10, 6],
                              lora_cfg=dict(rank=2, alpha=4) if lora else None)
    path = tmp_path / ('lora.py' if lora else 'plain.py')
    cfg.dump(str(path))
    return cfg, str(path)


def test_fold_lora_checkpoint_loads_into_plain_config(tmp_path):
    """The fold tool (run as a user would) writes a checkpoint and a config; that config
    has the plain backbone, and the pair gives the LoRA model's outputs."""
    cfg, cfg_path = _tiny_cfg(tmp_path, lora=True)
    model = build_model_from_cfg(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'lora_B' in n or 'pyra_weight_d' in n:
                p.normal_(std=0.3)
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'trained.pth')
    out = tmp_path / 'folded.pth'
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'model_converters',
                                                    'fold_peft.py'),
                           cfg_path, str(tmp_path / 'trained.pth'), str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    deploy = Config.fromfile(str(tmp_path / 'folded.py'))
    assert deploy.model.backbone.lora_cfg is None and 'init_cfg' not in deploy.model.backbone
    plain = build_model_from_cfg(deploy).eval()
    state = torch.load(out, weights_only=True)['state_dict']
    assert not any('lora' in k for k in state)
    plain.load_state_dict(state)  # strict
    x = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(plain(x, mode='tensor'), model(x, mode='tensor'),
                                   atol=1e-5, rtol=1e-5)


def test_visualisation_groups_match_merged_tokens():
    from visualize_merging import draw_groups, patch_groups
    model = PYRAViT(arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                              feedforward_channels=64),
                    img_size=64, patch_size=8, merge_mode='tome', merge_schedule=[20, 10],
                    out_type='featmap').eval()
    groups = patch_groups(model, torch.randn(1, 3, 64, 64))
    assert groups.shape == (8, 8)
    assert len(np.unique(groups)) == 64 + 1 - 30 - 1  # remaining tokens minus cls
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    out = draw_groups(rgb, groups, 8)
    pixel_groups = np.kron(groups, np.ones((8, 8), dtype=groups.dtype))
    interior = np.ones_like(pixel_groups, dtype=bool)
    interior[:, 1:] &= pixel_groups[:, 1:] == pixel_groups[:, :-1]
    interior[1:, :] &= pixel_groups[1:, :] == pixel_groups[:-1, :]
    for g in np.unique(groups):
        colours = out[(pixel_groups == g) & interior]
        assert len(np.unique(colours, axis=0)) == 1  # one mean colour per group


def test_benchmark_tool_prints_ratios(tmp_path, capsys, monkeypatch):
    from benchmark import main
    _, plain = _tiny_cfg(tmp_path, lora=False)
    cfg = Config.fromfile(plain)
    cfg.model.backbone.update(merge_mode='none', merge_schedule=None)
    base = str(tmp_path / 'none.py')
    cfg.dump(base)
    monkeypatch.chdir(ROOT)  # the configs' data root (the test images) is relative
    main([base, plain, '--batch-size', '2', '--repeats', '2', '--warmup', '1'])
    out = capsys.readouterr().out
    table = [ln for ln in out.splitlines() if ln.startswith(('none.py', 'plain.py'))]
    assert len(table) == 2  # one row per config, the baseline first
    assert table[0].split()[2] == '1.00x'
    flops_ratio = float(table[1].split()[-1].rstrip('x'))
    assert 1.1 < flops_ratio < 1.5  # merging 10 + 6 of 50 tokens in 2 layers: ~1.15x


def test_benchmark_drop_limit_rows_follow_each_merging_config(tmp_path):
    """--drop-baseline adds, right after each merging config, the same schedule with
    merge_mode='drop' (the limit); the limit has the merged token counts but no
    matching MACs, and its model really drops those tokens."""
    from benchmark import parse_args, plan_runs
    _, merged = _tiny_cfg(tmp_path, lora=True)
    cfg = Config.fromfile(merged)
    cfg.model.backbone.update(merge_mode='none', merge_schedule=None)
    base = str(tmp_path / 'none.py')
    cfg.dump(base)
    runs = plan_runs(parse_args([base, merged, '--drop-baseline', '--plain-baseline']))
    assert [r.limit_of for r in runs] == [None, None, None, 2]
    assert runs[3].override == dict(merge_mode='drop') and runs[3].path == merged
    from projects.pyra.flops import vit_macs
    kw = dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
              img_size=56, patch_size=8, merge_schedule=[10, 6])
    pyra, drop = PYRAViT(merge_mode='pyra', **kw), PYRAViT(merge_mode='drop', **kw).eval()
    matching = ((50 + 1) // 2) * (50 // 2) * 16 + ((40 + 1) // 2) * (40 // 2) * 16
    # PYRA's modulation: a D-wide product and sum on each of the 10 + 6 merged tokens
    modulation = 2 * (10 + 6) * 32
    assert vit_macs(pyra, (56, 56)) - vit_macs(drop, (56, 56)) == matching + modulation
    tokens = []
    drop.blocks[1].register_forward_hook(lambda m, i, o: tokens.append(o[0].shape[1]))
    drop(torch.randn(1, 3, 56, 56))
    assert tokens == [50 - 10 - 6]
