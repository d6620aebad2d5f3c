"""Every config under ``configs/`` builds to the parameter names, shapes and trainable
count recorded in ``tests/data/config_param_manifest.json``.

The manifest was written by running this file as a script (``python
tests/test_configs/test_config_manifest.py --write OUT``) on the commit before the ViT
core moved to ``projects/vit`` (issue 20), so a refactor that renames, reshapes,
drops, adds or (un)freezes any parameter of any config fails here. Configs whose model
did not build on that commit without data or files (an SPT allocation to compute, say)
are recorded with their error type and must still raise it.

Construction only: random initialisation is switched off while building (the manifest
is about structure, and a ViT-L initialises for seconds), nothing runs forward.
"""
import argparse
import contextlib
import glob
import hashlib
import json
import os.path as osp
import sys
from typing import Dict, Iterator

import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MANIFEST = osp.join(ROOT, 'tests', 'data', 'config_param_manifest.json')
LEAVES = sorted(osp.relpath(p, ROOT)
                for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                if '_base_' not in p)
_INITS = ('uniform_', 'normal_', 'trunc_normal_', 'kaiming_uniform_', 'kaiming_normal_',
          'xavier_uniform_', 'xavier_normal_', 'constant_', 'ones_', 'zeros_',
          'orthogonal_')


@contextlib.contextmanager
def no_random_init() -> Iterator[None]:
    """``torch.nn.init`` fills become no-ops (the tensors keep whatever memory held)."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITS}
    try:
        for name in _INITS:
            setattr(torch.nn.init, name, lambda tensor, *a, **k: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def model_key(cfg: Config) -> str:
    """One key per distinct model config (VTAB leaves of one model differ only in data
    and the head size, which is part of the model config)."""
    text = json.dumps(cfg.to_dict().get('model'), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(path: str) -> Dict:
    """``{'params': [[name, shape], ...], 'buffers': [...], 'trainable': n}`` of the
    config's model, or ``{'error': type name}``."""
    sys.path.insert(0, ROOT)
    import projects  # noqa: F401
    from projects.core.engine.model_builder import build_model_from_cfg
    cfg = Config.fromfile(osp.join(ROOT, path))
    try:
        with no_random_init(), torch.no_grad():
            model = build_model_from_cfg(cfg)
    except Exception as exc:  # recorded: it must stay the same error
        return dict(error=type(exc).__name__)
    # lists, in module order: the order is what an optimizer's saved state follows
    params = [[n, list(p.shape)] for n, p in model.named_parameters()]
    buffers = [[n, list(b.shape)] for n, b in model.named_buffers()]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return dict(params=params, buffers=buffers, trainable=trainable)


def compute_manifest() -> Dict:
    models, leaves = {}, {}
    for path in LEAVES:
        key = model_key(Config.fromfile(osp.join(ROOT, path)))
        leaves[path] = key
        if key not in models:
            models[key] = describe(path)
    return dict(leaves=leaves, models=models)


@pytest.fixture(scope='module')
def manifest() -> Dict:
    with open(MANIFEST) as f:
        return json.load(f)


def test_manifest_lists_every_config(manifest):
    assert sorted(manifest['leaves']) == LEAVES, (
        'configs were added or removed since the manifest was written; a new config '
        'gets its entry by re-running this file with --write')


def _groups() -> Dict[str, list]:
    """Leaves by the model key the manifest recorded for them (none while writing it;
    a missing manifest fails ``test_manifest_lists_every_config``)."""
    if not osp.isfile(MANIFEST):
        return {}
    with open(MANIFEST) as f:
        leaves = json.load(f)['leaves']
    groups: Dict[str, list] = {}
    for path, key in sorted(leaves.items()):
        groups.setdefault(key, []).append(path)
    return groups


@pytest.mark.parametrize('key,paths', sorted(_groups().items(), key=lambda kv: kv[1][0]),
                         ids=lambda v: v[0] if isinstance(v, list) else '')
def test_config_builds_to_the_manifest(key, paths, manifest):
    """Every leaf of a recorded model builds to that record (each distinct model
    config among them built once)."""
    want = manifest['models'][key]
    built: Dict[str, Dict] = {}
    for path in paths:
        now = model_key(Config.fromfile(osp.join(ROOT, path)))
        if now not in built:
            built[now] = describe(path)
        got = built[now]
        if 'error' in want:
            assert got == want, f'{path}: built differently than recorded ({got})'
            continue
        assert 'error' not in got, f'{path}: no longer builds ({got["error"]})'
        names = [n for n, _ in got['params']]
        assert sorted(names) == sorted(n for n, _ in want['params']), \
            f'{path}: parameter names differ'
        assert names == [n for n, _ in want['params']], f'{path}: parameter order differs'
        assert got['params'] == want['params'], f'{path}: parameter shapes differ'
        assert got['buffers'] == want['buffers'], f'{path}: buffers differ'
        assert got['trainable'] == want['trainable'], f'{path}: trainable count differs'


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='write the config parameter manifest')
    parser.add_argument('--write', required=True, help='output .json path')
    args = parser.parse_args()
    data = compute_manifest()
    with open(args.write, 'w') as f:
        json.dump(data, f, indent=0, sort_keys=True)
    print('wrote', args.write, len(data['leaves']), 'configs,', len(data['models']),
          'models')
