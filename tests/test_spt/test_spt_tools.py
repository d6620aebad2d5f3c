"""The one-command SPT path through ``tools/train.py`` (SPTRunner) and a 2-process CPU
DDP run through ``tools/dist_train.sh``, as user-level subprocesses on tiny data.

* run ``first`` computes the sensitivity and writes the allocation cache, run
  ``again`` (another work dir, same cache) reuses it unchanged, run ``other_budget``
  on the same cache stops with the mismatched-cache error;
* the DDP run computes its allocation with both ranks (all-reduced sums) and both
  ranks train the identical parameter set with identical values and optimizer state;
  its allocation file equals the single-process one, and its weights match a
  single-process run with the same total batch (``single8``, 1 x 8 images);
* run ``killed`` dies half-way through writing its allocation file; the next start
  (``recomputed``) finds no partial file and recomputes the same allocation;
* in-process: the sensitivity pass runs on the runner's device.
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
TOOL_HOOKS = osp.join(REPO, 'tests', 'test_tools')  # mmadapt_test_hooks
KILL_ENV = 'MMADAPT_TEST_KILL_DURING_WRITE'  # mmadapt_test_hooks.KILL_DURING_WRITE_ENV
KILLED_IN_WRITE_EXIT_CODE = 19  # mmadapt_test_hooks.KILLED_IN_WRITE_EXIT_CODE
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
    sub = subprocess_tools.with_paths(HERE, TOOL_HOOKS)
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
        'killed': sub.start(train + ['--work-dir', 'w_killed', '--cfg-options',
                                  f'{ALLOC}=cache/killed.pth'], root,
                            **{KILL_ENV: 'killed.pth'}),
    }
    for name, proc in phase1.items():
        result = sub.finish(proc)
        res[name] = result.returncode, result.stdout
    cache = osp.join(root, 'cache', 'single.pth')
    res['cache_mtime'] = osp.getmtime(cache) if osp.exists(cache) else None
    res['after_kill'] = sorted(os.listdir(osp.join(root, 'cache')))
    phase2 = {
        'again': sub.start(train + ['--work-dir', 'w_again', '--cfg-options',
                                 f'{ALLOC}=cache/single.pth'], root),
        'other_budget': sub.start(train + ['--work-dir', 'w_other', '--cfg-options',
                                        f'{ALLOC}=cache/single.pth',
                                        'model.backbone.spt_cfg.budget=999'], root),
        # the DDP run's total batch (2 x 4) in one process
        'single8': sub.start(train + ['--work-dir', 'w_single8', '--cfg-options',
                                   f'{ALLOC}=cache/single.pth',
                                   'train_dataloader.batch_size=8'], root),
        'recomputed': sub.start(train + ['--work-dir', 'w_recomputed', '--cfg-options',
                                      f'{ALLOC}=cache/killed.pth',
                                      'train_cfg.max_epochs=1'], root),
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
    into the same classifier with a plain ComposableViT backbone, with identical outputs."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    import projects.spt  # noqa: F401
    from projects.core.engine.model_builder import build_model_from_cfg
    from projects.core.peft.deploy import fold_checkpoint
    root = runs['root']
    _ok(runs['first'])
    cfg = Config.fromfile(CFG, import_custom_modules=False)  # test hooks not needed
    cfg.model.backbone.spt_cfg.allocation = osp.join(root, 'cache', 'single.pth')
    out = osp.join(root, 'folded.pth')
    _, deploy = fold_checkpoint(cfg, osp.join(root, 'w_first', 'epoch_2.pth'), out)
    assert deploy.model.backbone.type == 'ComposableViT' and 'spt_cfg' not in deploy.model.backbone
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


def _alloc(root, name):
    return torch.load(osp.join(root, 'cache', name), weights_only=True)


def _assert_same_allocation(a, b):
    """Every field equal except the measured duration of the pass."""
    assert a.keys() == b.keys()
    for key in a.keys() - {'sensitivity_seconds'}:
        if key == 'sparse':
            assert a[key].keys() == b[key].keys() and len(a[key]) > 0
            for name, index in a[key].items():
                assert torch.equal(index, b[key][name]), name
        else:
            assert a[key] == b[key], key


def test_ddp_allocation_and_weights_match_single_process(runs):
    """What a 2-process run must share with a 1-process run:

    * the allocation file: identical. The pass is deterministic (eval mode) and both
      runs score the same two batches of 4 images; under DDP rank b % 2 scores batch b
      and the all-reduce adds the two ranks' g^2 sums, which is the single process'
      0 + g1^2 + g2^2 (a sum of two terms does not depend on the order): same scores
      bit for bit, hence the same top-tau set, key and structure;
    * the trained weights: ``single8`` takes the same two steps (one per epoch) on the
      same 8 images, but its batch gradient is one sum over 8 samples while DDP sums 4
      per rank, all-reduces and averages. Equal in exact arithmetic, not in float
      (other summation order), so they match to rounding (tight tolerance) and no
      better; the 1 x 4 run ``first`` (4 steps) is far outside that tolerance.
    """
    root = runs['root']
    _ok(runs['ddp'])
    _ok(runs['single8'])
    _assert_same_allocation(_alloc(root, 'ddp.pth'), _alloc(root, 'single.pth'))
    ddp, single = _dump(root, 'w_ddp', 0), _dump(root, 'w_single8', 0)
    first = _dump(root, 'w_first', 0)
    assert ddp['trainable'].keys() == single['trainable'].keys() == first['trainable'].keys()
    for key in ddp['indices']:
        assert torch.equal(ddp['indices'][key], single['indices'][key]), key
    # measured: |ddp - single8| <= 4e-9, |ddp - first| >= 1e-3 for every tensor
    tol = dict(rtol=1e-5, atol=1e-7)
    far = 0
    for key, value in ddp['trainable'].items():
        torch.testing.assert_close(single['trainable'][key], value, **tol, msg=key)
        far += not torch.allclose(first['trainable'][key], value, **tol)
    assert far == len(ddp['trainable'])  # the tolerance separates another schedule


def test_killed_allocation_write_is_recomputed(runs):
    """A run killed half-way through writing its allocation leaves no file under the
    cache's name; the next start recomputes the allocation instead of loading it."""
    root = runs['root']
    code, out = runs['killed']
    assert code == KILLED_IN_WRITE_EXIT_CODE, out[-4000:]
    assert 'SPT: computing sensitivity' in out and 'allocation saved' not in out
    assert 'killed.pth' not in runs['after_kill']
    log = _ok(runs['recomputed'])
    assert 'SPT: computing sensitivity' in log and 'reusing' not in log
    _assert_same_allocation(_alloc(root, 'killed.pth'), _alloc(root, 'single.pth'))


def test_sensitivity_pass_runs_on_the_runner_device(tmp_path, monkeypatch):
    """SPTRunner scores on the device mmengine puts the real model on: the scoring
    model is moved there (``.to``, which also points its data preprocessor there)
    before the pass, and the batches of the pass arrive on it. On this CPU machine
    that device is the CPU, so the moves are recorded rather than inferred from
    where the tensors end up."""
    from mmengine.config import Config
    from mmengine.device import get_device
    from mmengine.model import BaseModel

    import projects.spt.runner as spt_runner
    from projects.spt.sensitivity import data_loss
    _write_fashion_mnist(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(CFG, import_custom_modules=False)
    cfg.custom_hooks = [dict(type='SPTAllocationHook')]
    cfg.model.backbone.spt_cfg.allocation = str(tmp_path / 'alloc.pth')
    cfg.work_dir = str(tmp_path / 'work')
    cfg.launcher = 'none'

    moves, at_pass, batch_devices = [], [], []
    real_to, real_pass = BaseModel.to, spt_runner.accumulate_sensitivity

    def recording_to(self, *args, **kwargs):
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        moves.append((type(getattr(self, 'backbone', self)).__name__, device))
        return real_to(self, *args, **kwargs)

    def recording_loss(model, batch):
        batch_devices.append(model.data_preprocessor(batch, training=True)['inputs'].device)
        return data_loss(model, batch)

    def recording_pass(model, batches, params, **kwargs):
        at_pass.append(list(moves))
        at_pass.append({p.device for p in model.parameters()})
        return real_pass(model, batches, params, loss_fn=recording_loss, **kwargs)

    monkeypatch.setattr(BaseModel, 'to', recording_to)
    monkeypatch.setattr(spt_runner, 'accumulate_sensitivity', recording_pass)
    runner = spt_runner.SPTRunner.from_cfg(cfg)
    device = torch.device(get_device())
    assert at_pass[0] == [('ComposableViT', device)]  # the plain scoring model, moved first
    assert at_pass[1] == {device}
    assert batch_devices and set(batch_devices) == {device}
    assert ('SPTViT', device) in moves  # where Runner.wrap_model put the real model
    assert {p.device for p in runner.model.parameters()} == {device}
    assert runner.scoring_device() == get_device()
