"""Fixtures for the tool tests: tiny synthetic data folders and a subprocess runner.

The tools run as a user runs them (``python tools/train.py ...``) in a scratch folder
that holds ``data/vtab-1k/fashion_mnist`` and ``data/embedded_seg`` in the real
layouts, so the configs' relative ``data_root`` resolve there.
"""
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOLS = osp.join(REPO_ROOT, 'tools')
CONFIGS = osp.join(REPO_ROOT, 'tests', 'data', 'configs')
HOOKS_DIR = osp.dirname(osp.abspath(__file__))  # mmadapt_test_hooks.py

CLS_CFG = osp.join(CONFIGS, 'pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-mnist-56px.py')
SEG_CFG = osp.join(CONFIGS, 'pyra-vit-tiny-p8_fcn_8iter_embedded-seg-64px.py')
CLS_TESTHOOKS_CFG = osp.join(CONFIGS, 'testhooks_cls.py')
SEG_TESTHOOKS_CFG = osp.join(CONFIGS, 'testhooks_seg.py')

NUM_SEG_CLASSES = 23

INTERRUPT_EXIT_CODE = 17  # mmadapt_test_hooks.INTERRUPT_EXIT_CODE
RESUME_CASES = {
    # lib: (config, option that interrupts, checkpoint written before the interruption,
    #       final checkpoint)
    'cls': (CLS_TESTHOOKS_CFG, 'custom_hooks.1.after_epoch=1', 'epoch_1.pth', 'epoch_3.pth'),
    'seg': (SEG_TESTHOOKS_CFG, 'custom_hooks.1.after_iter=4', 'iter_4.pth', 'iter_8.pth'),
}


def _write_fashion_mnist(root: str, rng: np.random.Generator) -> None:
    """12 train + 8 test 28x28 grayscale PNGs with VTAB-1k list files."""
    task = osp.join(root, 'data', 'vtab-1k', 'fashion_mnist')
    os.makedirs(osp.join(task, 'images', 'train'))
    os.makedirs(osp.join(task, 'images', 'test'))
    lines = {'train': [], 'test': []}
    for split, n in (('train', 12), ('test', 8)):
        for i in range(n):
            label = int(rng.integers(10))
            # class-dependent stripes plus noise, so the task is learnable
            img = (np.arange(28)[None, :] * (label + 1) % 28 * 9).astype(np.uint8)
            img = np.clip(img + rng.integers(0, 40, (28, 28)), 0, 255).astype(np.uint8)
            rel = f'images/{split}/{i:05d}.png'
            Image.fromarray(img, mode='L').save(osp.join(task, rel))
            lines[split].append(f'{rel} {label}')
    files = {
        'train800.txt': lines['train'][:8],
        'val200.txt': lines['train'][8:],
        'train800val200.txt': lines['train'],
        'test.txt': lines['test'],
    }
    for name, rows in files.items():
        with open(osp.join(task, name), 'w') as f:
            f.write('\n'.join(rows) + '\n')


def _write_embedded_seg(root: str, rng: np.random.Generator) -> None:
    """6 train + 2 val 80x80 RGB images with label maps (23 classes, 255 = ignore)."""
    base = osp.join(root, 'data', 'embedded_seg')
    for split, n in (('train', 6), ('val', 2)):
        os.makedirs(osp.join(base, 'img_dir', split))
        os.makedirs(osp.join(base, 'ann_dir', split))
        for i in range(n):
            label = np.zeros((80, 80), np.uint8)
            for _ in range(4):  # rectangles of random classes
                y, x = rng.integers(0, 60, 2)
                h, w = rng.integers(10, 40, 2)
                label[y:y + h, x:x + w] = rng.integers(NUM_SEG_CLASSES)
            label[:4, :] = 255
            img = rng.integers(0, 60, (80, 80, 3)).astype(np.uint8)
            img += (label[..., None] % NUM_SEG_CLASSES * 8).astype(np.uint8)
            Image.fromarray(img).save(osp.join(base, 'img_dir', split, f'{i:04d}.png'))
            Image.fromarray(label).save(osp.join(base, 'ann_dir', split, f'{i:04d}.png'))


@pytest.fixture(scope='session')
def data_root(tmp_path_factory):
    """Scratch folder with tiny ``data/`` trees; run the tools with it as cwd."""
    root = str(tmp_path_factory.mktemp('tool_runs'))
    rng = np.random.default_rng(0)
    _write_fashion_mnist(root, rng)
    _write_embedded_seg(root, rng)
    return root


def tool_env(**extra) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [HOOKS_DIR, REPO_ROOT] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    # one thread everywhere: identical arithmetic in every compared run, and runs can
    # share the two cores
    env['OMP_NUM_THREADS'] = '1'
    env.update(extra)
    return env


def python_tool(name: str, *args) -> list:
    return [sys.executable, osp.join(TOOLS, name), *map(str, args)]


def start(cmd, cwd, **env) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=tool_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f'{proc.args} timed out; output:\n{out[-4000:]}')
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)


def run(cmd, cwd, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    return finish(start(cmd, cwd, **env), timeout)


def check(result: subprocess.CompletedProcess, code: int = 0) -> str:
    assert result.returncode == code, (
        f'{" ".join(result.args)} exited {result.returncode} (expected {code}):\n'
        f'{result.stdout[-6000:]}')
    return result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='session')
def tools():
    """The helpers above (test modules cannot import conftest in importlib mode)."""
    from types import SimpleNamespace
    return SimpleNamespace(
        REPO_ROOT=REPO_ROOT, TOOLS=TOOLS, CONFIGS=CONFIGS, CLS_CFG=CLS_CFG,
        SEG_CFG=SEG_CFG, CLS_TESTHOOKS_CFG=CLS_TESTHOOKS_CFG,
        SEG_TESTHOOKS_CFG=SEG_TESTHOOKS_CFG, RESUME_CASES=RESUME_CASES,
        INTERRUPT_EXIT_CODE=INTERRUPT_EXIT_CODE, python_tool=python_tool, start=start,
        finish=finish, run=run, check=check, free_port=free_port, tool_env=tool_env,
        load_ckpt=load_ckpt)


def load_ckpt(path):
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.fixture(scope='session')
def resume_runs(data_root):
    """Per case of ``RESUME_CASES``, as user-level subprocesses:

    * ``full``: the uninterrupted run;
    * ``cut``: the same run killed by InterruptHook right after a checkpoint, then
      ``cut_resume``: ``--resume`` in its work dir (auto for cls, a path for seg);
    * ``ctrl_resume``: the same resume from a copy of that checkpoint without RNG
      states.

    Two phases of four parallel single-thread processes.
    """
    train = python_tool('train.py')
    out, procs = {}, {}
    for lib, (cfg, stop, _, _) in RESUME_CASES.items():
        out[lib] = dict(cfg=cfg, **{name: osp.join(data_root, f'work_{lib}_{name}')
                                    for name in ('full', 'cut', 'ctrl')})
        procs[lib, 'full'] = start(train + [cfg, '--work-dir', out[lib]['full']], data_root)
        procs[lib, 'cut'] = start(
            train + [cfg, '--work-dir', out[lib]['cut'], '--cfg-options', stop], data_root)
    for (lib, name), proc in procs.items():
        out[lib][name + '_result'] = finish(proc)
        if name == 'cut' and osp.isdir(out[lib]['cut']):
            out[lib]['cut_files'] = sorted(os.listdir(out[lib]['cut']))

    procs = {}
    for lib, (_, _, ckpt_k, _) in RESUME_CASES.items():
        r = out[lib]
        if r['cut_result'].returncode != INTERRUPT_EXIT_CODE or \
                not osp.exists(osp.join(r['cut'], ckpt_k)):
            continue  # reported by test_interrupted_after_checkpoint
        shutil.copytree(r['cut'], r['ctrl'])
        ckpt = load_ckpt(osp.join(r['ctrl'], ckpt_k))
        del ckpt['rng_state']
        torch.save(ckpt, osp.join(r['ctrl'], ckpt_k))
        with open(osp.join(r['ctrl'], 'last_checkpoint'), 'w') as f:  # for --resume auto
            f.write(osp.join(r['ctrl'], ckpt_k))
        for name in ('cut', 'ctrl'):
            resume = ['--resume'] if lib == 'cls' else [
                '--resume', osp.join(r[name], ckpt_k)]
            procs[lib, name + '_resume'] = start(
                train + [r['cfg'], '--work-dir', r[name]] + resume, data_root)
    for (lib, name), proc in procs.items():
        out[lib][name + '_result'] = finish(proc)
    return out
