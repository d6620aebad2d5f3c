"""tools/analysis/benchmark.py --part model --breakdown on a tiny segmentor: the parts it
times are the model's own parts, the unmerge row exists only for a merging backbone,
and the counted multiply-adds of backbone and head add up to the model's."""
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from projects.core.engine.model_builder import build_model_from_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_SEG = osp.join(ROOT, 'tests', 'data', 'configs',
                    'pyra-vit-tiny-p8_fcn_8iter_embedded-seg-64px.py')
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))


def _tiny(merge: bool):
    cfg = Config.fromfile(TINY_SEG)
    if merge:
        cfg.model.backbone.update(merge_mode='pyra', merge_schedule=[10, 6])
    torch.manual_seed(0)
    return build_model_from_cfg(cfg).eval()


def test_merge_modes_run_each_config_per_mode_with_its_schedule():
    from benchmark import parse_args, plan_runs
    runs = plan_runs(parse_args([TINY_SEG, '--merge-modes', 'none', 'tome', 'pyra',
                                 '--cfg-options', 'model.backbone.merge_mode=pyra',
                                 'model.backbone.merge_schedule=[10,6]']))
    assert [r.override for r in runs] == [dict(merge_mode='none', merge_schedule=None),
                                          dict(merge_mode='tome'), dict(merge_mode='pyra')]
    with pytest.raises(SystemExit, match='has no merge_schedule to merge with'):
        plan_runs(parse_args([TINY_SEG, '--merge-modes', 'tome']))


def test_breakdown_needs_the_whole_model():
    from benchmark import parse_args
    with pytest.raises(SystemExit):
        parse_args([TINY_SEG, '--breakdown'])  # --part backbone: nothing to split


@torch.no_grad()
def test_parts_are_the_models_own_parts():
    from benchmark import part_fns
    x = torch.randn(2, 3, 64, 64)
    for merge in (False, True):
        model = _tiny(merge)
        parts = part_fns(model, x)
        assert (parts['unmerge'] is None) == (not merge)
        # backbone then head on its features is the tensor forward (no neck here)
        torch.testing.assert_close(parts['head'](x), model(x, mode='tensor'))
        torch.testing.assert_close(parts['backbone'](x)[0], model.extract_feat(x)[0])
        if merge:  # the unmerge of the last tap gives that tap (the head's input)
            torch.testing.assert_close(parts['unmerge'](x)[0][:, 1:],
                                       model.extract_feat(x)[0].flatten(2).transpose(1, 2))


@torch.no_grad()
def test_counted_macs_of_backbone_and_head_add_up_to_the_model():
    from benchmark import counted_macs
    x = torch.randn(1, 3, 64, 64)
    plain, merged = _tiny(False), _tiny(True)
    for model in (plain, merged):
        feats = model.extract_feat(x)
        whole = counted_macs(lambda t, m=model: m(t, mode='tensor'), x)
        parts = counted_macs(model.backbone, x) + counted_macs(
            lambda _t, m=model, f=feats: m.decode_head(f), x)
        assert whole == parts > 0
    assert counted_macs(merged.backbone, x) < counted_macs(plain.backbone, x)


def test_breakdown_table(capsys):
    from benchmark import main
    main([TINY_SEG, '--plain-baseline', '--part', 'model', '--breakdown', '--batch-size', '1',
          '--repeats', '1', '--warmup', '0',
          '--cfg-options', 'model.backbone.merge_mode=pyra',
          'model.backbone.merge_schedule=[10,6]'])
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith('where the time goes'))
    rows = [ln.split() for ln in lines[start + 2:] if ln.strip()]
    assert len(rows) == 2  # plain ViT, then the merging config
    plain, merging = rows
    assert plain[0] == 'plain' and merging[0].startswith('pyra-vit-tiny')
    # model, backbone, unmerge, head, other, head %, 3 x GMACs
    assert plain[-7] == '-' and float(merging[-7]) >= 0  # only a merging model unmerges
    for row in rows:
        model_ms, backbone_ms, head_ms = float(row[-9]), float(row[-8]), float(row[-6])
        assert model_ms > 0 and backbone_ms > 0 and head_ms > 0
