"""ESTA training end to end on a tiny config: resume restores the sampler exactly and
skips the least-squares init; exported stitches equal their supernet path and run
under tools/test.py with the supernet path's accuracy."""
import os.path as osp
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint

from projects.core.engine.model_builder import build_model_from_cfg
from projects.esta.deploy import deployed_stitches, export_stitches

from .common import stitch_probe

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
CFG = osp.join(HERE, 'configs', 'esta_tiny_28px.py')


def _train(work_dir, resume_from=None):
    cfg = Config.fromfile(CFG)
    cfg.work_dir = work_dir
    if resume_from:
        cfg.load_from, cfg.resume = resume_from, True
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('esta')
    full = str(root / 'full')
    _train(full)
    cut = str(root / 'cut')
    shutil.copytree(full, cut, ignore=shutil.ignore_patterns('iter_6.pth', 'last_checkpoint'))
    resumed = _train(cut, resume_from=osp.join(cut, 'iter_3.pth'))
    return full, cut, resumed


def _ckpt(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def test_resume_restores_sampler_and_skips_init(runs):
    full, cut, _ = runs
    a, b = _ckpt(osp.join(full, 'iter_6.pth')), _ckpt(osp.join(cut, 'iter_6.pth'))
    sa, sb = a['esta_sampler']['sampler'], b['esta_sampler']['sampler']
    assert sa['counts'] == sb['counts'] and sum(sa['counts']) == 6
    assert sa['rng'] == sb['rng']
    np.testing.assert_allclose(sa['scores'], sb['scores'], rtol=1e-6, atol=0)
    assert any(s > 0 for s in sa['scores'])
    mid = _ckpt(osp.join(full, 'iter_3.pth'))['esta_sampler']['sampler']
    assert sum(mid['counts']) == 3 and mid['rng'] != sa['rng']
    for key, value in a['state_dict'].items():
        assert torch.allclose(value.float(), b['state_dict'][key].float(), atol=1e-6), key
    logs = open(next(p for p in _logs(cut))).read()
    assert 'least-squares init skipped' in logs


def _logs(work_dir):
    import glob
    return sorted(glob.glob(osp.join(work_dir, '*', '*.log')))[-1:]


def test_exported_stitch_equals_supernet_and_runs_under_tools_test(runs, subprocess_tools,
                                                                   tmp_path):
    full, _, _ = runs
    cfg = Config.fromfile(CFG)
    ckpt = osp.join(full, 'iter_6.pth')
    stitches = deployed_stitches(full)
    assert len(stitches) >= 2
    real = next(s for s in stitches if s >= 2)  # a stitch, not an anchor alone
    paths = export_stitches(cfg, ckpt, [real, 0], str(tmp_path))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cfg_build = Config.fromfile(CFG)
        for anchor in cfg_build.model.backbone.anchors:
            anchor.pop('init_cfg', None)
        # the runner's normalisation, as tools/test.py applies it
        cfg_build.model.data_preprocessor = cfg_build.data_preprocessor
        supernet = build_model_from_cfg(cfg_build).eval()
        load_checkpoint(supernet, ckpt, map_location='cpu', strict=True)
        loader = Runner.build_dataloader(Config.fromfile(paths[0]).test_dataloader)
    x = torch.randn(3, 3, 28, 28)
    for stitch, path in zip([real, 0], paths):
        dep_cfg = Config.fromfile(path)
        assert dep_cfg.model.type == 'ImageClassifier'
        assert not any(h['type'] in ('ESTASamplingHook', 'StitchInitHook')
                       for h in dep_cfg.custom_hooks)
        deployed = build_model_from_cfg(dep_cfg).eval()
        load_checkpoint(deployed, path[:-3] + '.pth', map_location='cpu', strict=True)
        assert not any('lora' in k or 'stitch_bias' in k for k in deployed.state_dict())
        with torch.no_grad():
            want = supernet.head(supernet.backbone(x, stitch=stitch))
            got = deployed.head(deployed.backbone(x))
        assert (want - got).abs().max() <= 1e-5
    # the supernet path's accuracy on the test images, computed here
    correct = total = 0
    with torch.no_grad():
        for data in loader:
            data = supernet.data_preprocessor(data, False)
            pred = supernet.head(supernet.backbone(data['inputs'], stitch=real)).argmax(-1)
            labels = torch.cat([d.gt_label for d in data['data_samples']])
            correct += int((pred == labels).sum())
            total += len(labels)
    out = subprocess_tools.check(subprocess_tools.run(
        [sys.executable, osp.join(ROOT, 'tools', 'test.py'), paths[0], paths[0][:-3] + '.pth',
         '--work-dir', str(tmp_path / 'test')], ROOT, timeout=600))
    acc = float(re.findall(r'accuracy/top1: ([0-9.]+)', out)[-1])
    assert acc == pytest.approx(100.0 * correct / total, abs=1e-3)
    # the every-stitch evaluation tool gives the same accuracy for that stitch
    sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
    import esta_eval_stitches
    esta_eval_stitches.main([CFG, ckpt, '--stitches', str(real), '0', '--no-speed',
                             '--out-dir', str(tmp_path / 'eval')])
    import json
    summary = json.load(open(tmp_path / 'eval' / 'esta_stitches.json'))
    row = next(r for r in summary['rows'] if r['stitch'] == real)
    assert summary['test_images'] == total
    assert row['accuracy'] == pytest.approx(100.0 * correct / total, abs=1e-6)
    assert row['gmacs'] * 1e9 == pytest.approx(supernet.backbone.stitch_macs(real))


def test_run_embedded_returns_the_deployed_best_stitch(monkeypatch, tmp_path):
    """``run_embedded``'s contract, on the tiny config (the real one takes minutes)."""
    import projects.esta.embedded as embedded
    monkeypatch.setattr(embedded, 'CONFIG', CFG)
    out = embedded.run_embedded(str(tmp_path / 'emb'), seed=0, epochs=None, cfg_options=None)
    model, runner = out['model'], out['runner']
    assert not model.training and 'accuracy/top1' in out['metrics']
    supernet = runner.model
    assert out['trainable'] == sum(p.numel() for p in supernet.parameters() if p.requires_grad)
    best = max(out['deployed'], key=lambda d: d['score'])['stitch']
    assert out['stitch'] == best
    batch = next(iter(runner.test_dataloader))
    x = supernet.data_preprocessor(batch, False)['inputs']
    with torch.no_grad():
        want = supernet.head(supernet.backbone(x, stitch=best))
        got = model(x, mode='tensor')
    assert (want - got).abs().max() <= 1e-5


def test_lpft_head_is_the_probe_of_the_largest_anchor(tmp_path):
    """The embedded recipe's LP-FT on a supernet: LinearProbeInitHook runs after
    ESTASamplingHook.before_train, which puts the model on the largest anchor, so the
    head is the converged probe of the teacher's features (here computed again from
    the teacher path), not of whatever stitch the model was left on."""
    cfg = Config.fromfile(CFG)
    cfg.work_dir = str(tmp_path)
    cfg.custom_hooks.append(dict(type='LinearProbeInitHook', l2_grid=(1e-2,)))
    cfg.train_cfg.max_iters = 1
    cfg.optim_wrapper.optimizer.lr = 0.0  # the head keeps the probe through the step
    runner = Runner.from_cfg(cfg)
    model = runner.model
    model.backbone.set_stitch(0)  # the smaller anchor: a wrong place to fit the head
    runner.train()
    teacher = model.backbone.teacher_stitch

    def probe(stitch):
        return stitch_probe(model, cfg, stitch)

    weight, bias = probe(teacher)
    head = model.head.fc
    assert torch.allclose(head.weight, weight, atol=1e-4)
    assert torch.allclose(head.bias, bias, atol=1e-4)
    other, _ = probe(0)
    assert (head.weight - other).abs().max() > 1e-2
