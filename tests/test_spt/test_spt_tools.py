"""The one-command SPT path through ``tools/train.py`` (SPTRunner) and a 2-process CPU
DDP run through ``tools/dist_train.sh``, as user-level subprocesses on tiny data.

* run ``first`` computes the sensitivity and writes the allocation cache, run
  ``again`` (another work dir, same cache) reuses it unchanged, run ``other_budget``
  on the same cache stops with the mismatched-cache error;
* the DDP run computes its allocation with both ranks (all-reduced sums) and both
  ranks train the identical parameter set with identical values and optimizer state.
"""
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from PIL import Image

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
CFG = osp.join(HERE, 'data', 'spt-lora_vit-tiny-p8_2xb4-2e_vtab1k-fashion-mnist-56px.py')
ALLOC = 'model.backbone.spt_cfg.allocation'


def _write_fashion_mnist(root):
    rng = np.random.default_rng(0)
    task = osp.join(root, 'data', 'vtab-1k', 'fashion_mnist')
    lines = {}
    for split, n in (('train', 12), ('test', 4)):
        os.makedirs(osp.join(task, 'images', split))
        lines[split] = []
        for i in range(n):
            label = int(rng.integers(10))
            img = (np.arange(28)[None, :] * (label + 1) % 28 * 9).astype(np.uint8)
            img = np.clip(img + rng.integers(0, 40, (28, 28)), 0, 255).astype(np.uint8)
            rel = f'images/{split}/{i:05d}.png'
            Image.fromarray(img, mode='L').save(osp.join(task, rel))
            lines[split].append(f'{rel} {label}')
    for name, rows in (('train800.txt', lines['train'][:8]), ('val200.txt', lines['train'][8:]),
                       ('train800val200.txt', lines['train']), ('test.txt', lines['test'])):
        with open(osp.join(task, name), 'w') as f:
            f.write('\n'.join(rows) + '\n')


def _ok(result):
    code, out = result
    assert code == 0, out[-6000:]
    return out


@pytest.fixture(scope='module')
def runs(tmp_path_factory, subprocess_tools):
    sub = subprocess_tools.with_paths(HERE)  # spt_test_hooks
    root = str(tmp_path_factory.mktemp('spt_runs'))
    _write_fashion_mnist(root)
    train = [sys.executable, osp.join(REPO, 'tools', 'train.py'), CFG]
    dist = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), CFG, '2']
    res = dict(root=root)
    phase1 = {
        'first': sub.start(train + ['--work-dir', 'w_first', '--cfg-options',
                                 f'{ALLOC}=cache/single.pth'], root),
        'ddp': sub.start(dist + ['--work-dir', 'w_ddp', '--cfg-options',
                              f'{ALLOC}=cache/ddp.pth'], root, PORT=str(sub.free_port())),
    }
    for name, proc in phase1.items():
        result = sub.finish(proc)
        res[name] = result.returncode, result.stdout
    cache = osp.join(root, 'cache', 'single.pth')
    res['cache_mtime'] = osp.getmtime(cache) if osp.exists(cache) else None
    phase2 = {
        'again': sub.start(train + ['--work-dir', 'w_again', '--cfg-options',
                                 f'{ALLOC}=cache/single.pth'], root),
        'other_budget': sub.start(train + ['--work-dir', 'w_other', '--cfg-options',
                                        f'{ALLOC}=cache/single.pth',
                                        'model.backbone.spt_cfg.budget=999'], root),
    }
    for name, proc in phase2.items():
        result = sub.finish(proc)
        res[name] = result.returncode, result.stdout
    return res


def _dump(root, work, rank):
    return torch.load(osp.join(root, work, f'trainable_rank{rank}.pth'), weights_only=True)


def test_one_command_computes_then_reuses(runs):
    root = runs['root']
    first, again = _ok(runs['first']), _ok(runs['again'])
    assert 'SPT: computing sensitivity' in first and 'allocation saved to' in first
    assert 'SPT: reusing the cached allocation cache/single.pth' in again
    assert 'computing sensitivity' not in again
    cache = osp.join(root, 'cache', 'single.pth')
    assert osp.getmtime(cache) == runs['cache_mtime']  # not rewritten
    alloc = torch.load(cache, weights_only=True)
    assert alloc['num_samples'] == 8 and alloc['budget'] == 1500
    a, b = _dump(root, 'w_first', 0), _dump(root, 'w_again', 0)
    assert set(a['trainable']) == set(b['trainable']) and len(a['trainable']) > 0
    assert all(torch.equal(a['indices'][k], b['indices'][k]) for k in a['indices'])
    backbone_state = {k: v for k, v in a['state_sizes'].items() if k.startswith('backbone.')}
    assert sum(backbone_state.values()) == alloc['cost']['total']
    assert set(a['state_sizes']) <= set(a['trainable'])
    head = {k for k in a['trainable'] if k.startswith('head.')}
    assert set(a['trainable']) - head == {f'backbone.{k}' for k in _spt_names(a)}
    # the hook records the allocation in the checkpoint and the work dir
    ckpt = torch.load(osp.join(root, 'w_first', 'epoch_2.pth'), map_location='cpu',
                      weights_only=False)
    assert ckpt['spt']['key'] == alloc['key']
    assert osp.isfile(osp.join(root, 'w_first', 'spt_allocation.json'))


def test_trained_checkpoint_folds_into_plain_model(runs):
    """Deployment of the real training output: the folded checkpoint loads strictly
    into the same classifier with a plain PYRAViT backbone, with identical outputs."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    import projects.spt  # noqa: F401
    from projects.core.model_builder import build_model_from_cfg
    from projects.core.deploy import fold_checkpoint
    root = runs['root']
    _ok(runs['first'])
    cfg = Config.fromfile(CFG, import_custom_modules=False)  # test hooks not needed
    cfg.model.backbone.spt_cfg.allocation = osp.join(root, 'cache', 'single.pth')
    out = osp.join(root, 'folded.pth')
    _, deploy = fold_checkpoint(cfg, osp.join(root, 'w_first', 'epoch_2.pth'), out)
    assert deploy.model.backbone.type == 'PYRAViT' and 'spt_cfg' not in deploy.model.backbone
    assert all(h['type'] != 'SPTAllocationHook' for h in deploy.custom_hooks)
    spt_model = build_model_from_cfg(cfg).eval()
    load_checkpoint(spt_model, osp.join(root, 'w_first', 'epoch_2.pth'), strict=True)
    plain = build_model_from_cfg(Config.fromfile(osp.join(root, 'folded.py'),
                                                 import_custom_modules=False)).eval()
    load_checkpoint(plain, out, strict=True)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(plain(x, mode='tensor'), spt_model(x, mode='tensor'),
                                   atol=1e-5, rtol=1e-5)
    assert any(v.abs().sum() > 0 for k, v in spt_model.backbone.spt_parameters().items()
               if k.endswith('.values'))  # trained, so the check is not vacuous


def _spt_names(dump):
    return {k[len('backbone.'):] for k in dump['trainable']
            if k.startswith('backbone.') and ('.values' in k or '.lora.' in k)}


def test_mismatched_cache_is_a_clear_error(runs):
    code, out = runs['other_budget']
    assert code != 0
    assert 'mismatched SPT allocation cache cache/single.pth' in out
    assert '"budget": 999' in out and '"budget": 1500' in out


def test_ddp_two_processes_train_identical_parameter_set(runs):
    root = runs['root']
    log = _ok(runs['ddp'])
    assert 'Distributed training: True' in log
    assert 'over 8 samples (batch 4, 2 process(es))' in log
    d0, d1 = _dump(root, 'w_ddp', 0), _dump(root, 'w_ddp', 1)
    assert (d0['rank'], d1['rank'], d0['world_size']) == (0, 1, 2)
    assert set(d0['trainable']) == set(d1['trainable']) and len(d0['trainable']) > 2
    assert d0['indices'].keys() == d1['indices'].keys() and len(d0['indices']) > 0
    for k in d0['indices']:
        assert torch.equal(d0['indices'][k], d1['indices'][k]), k
    assert d0['state_sizes'] == d1['state_sizes']
    moved = 0
    for k, v in d0['trainable'].items():
        assert torch.equal(v, d1['trainable'][k]), k
        moved += int('.values' in k and bool(v.abs().sum() > 0))
    assert moved > 0  # the sparse values really trained
