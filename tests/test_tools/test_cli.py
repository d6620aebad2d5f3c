"""Command-line behaviour of tools/ and the compat helpers behind it."""
import importlib.util
import io
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer

from projects.core.runtime import compat


def _load_tool(tools, name):
    spec = importlib.util.spec_from_file_location(f'mmadapt_tool_{name}',
                                                  osp.join(tools.TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- --help
@pytest.mark.parametrize('tool,expected', [
    ('train.py', ['--work-dir', '--resume', '--amp', '--cfg-options', '--launcher']),
    ('test.py', ['checkpoint', '--work-dir', '--out', '--show-dir', '--launcher']),
])
def test_python_tool_help(tool, expected, tools, tmp_path):
    out = tools.check(tools.run(tools.python_tool(tool, '--help'), str(tmp_path)))
    for flag in expected:
        assert flag in out


@pytest.mark.parametrize('script,usage', [
    ('dist_train.sh', 'CONFIG NPROC'),
    ('dist_test.sh', 'CONFIG CHECKPOINT NPROC'),
    ('slurm_train.sh', 'PARTITION JOB_NAME CONFIG'),
    ('slurm_test.sh', 'PARTITION JOB_NAME CONFIG CHECKPOINT'),
])
def test_dist_script_help(script, usage, tools, tmp_path):
    path = osp.join(tools.TOOLS, script)
    out = tools.check(tools.run(['bash', path, '--help'], str(tmp_path)))
    assert usage in out
    assert tools.run(['bash', path], str(tmp_path)).returncode == 2  # missing args


@pytest.mark.parametrize('script,args,tool', [
    ('slurm_train.sh', ['a b.py', '--work-dir', 'w'], 'train.py'),
    ('slurm_test.sh', ['a b.py', 'c.pth', '--out', 'o.pkl'], 'test.py'),
])
@pytest.mark.parametrize('env,resources', [
    ({}, ['--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8', '--cpus-per-task=5']),
    (dict(GPUS='16', GPUS_PER_NODE='4', CPUS_PER_TASK='3', SRUN_ARGS='--time=10 --qos=hi'),
     ['--gres=gpu:4', '--ntasks=16', '--ntasks-per-node=4', '--cpus-per-task=3']),
    (dict(GPUS='2'), ['--gres=gpu:2', '--ntasks=2', '--ntasks-per-node=2',
                      '--cpus-per-task=5']),
])
def test_slurm_script_srun_command(script, args, tool, env, resources, tools, tmp_path):
    """No Slurm here: an ``srun`` on PATH records the command line the script builds
    (arguments with spaces stay single arguments)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n')
    (bin_dir / 'srun').chmod(0o755)
    log = tmp_path / 'srun.log'
    result = tools.run(['bash', osp.join(tools.TOOLS, script), 'gpu', 'job 1', *args],
                       str(tmp_path), PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                       SRUN_LOG=str(log), **env)
    tools.check(result)
    argv = log.read_text().splitlines()
    extra = env.get('SRUN_ARGS', '').split()
    assert argv[:8 + len(extra)] == ['-p', 'gpu', '--job-name=job 1', *resources,
                                     '--kill-on-bad-exit=1', *extra]
    python, *rest = argv[8 + len(extra):]
    positional = 1 if tool == 'train.py' else 2  # CONFIG [CHECKPOINT]
    assert python.endswith('python')
    assert rest == ['-u', osp.join(tools.TOOLS, tool), *args[:positional],
                    '--launcher', 'slurm', *args[positional:]]


# --------------------------------------------------------------- config preparation
def test_train_cfg_cli_precedence(tools):
    train = _load_tool(tools, 'train')
    cfg = train.setup_cfg(train.parse_args([
        tools.CLS_CFG, '--work-dir', 'wd', '--resume', 'a/b.pth',
        '--cfg-options', 'train_cfg.max_epochs=5']))
    assert (cfg.work_dir, cfg.resume, cfg.load_from) == ('wd', True, 'a/b.pth')
    assert cfg.train_cfg.max_epochs == 5
    assert cfg.default_scope == 'mmpretrain'
    cfg = train.setup_cfg(train.parse_args([tools.SEG_CFG, '--resume']))
    assert (cfg.resume, cfg.load_from) == (True, None)
    assert cfg.work_dir == osp.join('./work_dirs', 'pyra-vit-tiny-p8_fcn_8iter_embedded-seg-64px')
    assert cfg.default_scope == 'mmseg'
    assert dict(type='RNGStateHook') in cfg.custom_hooks


def test_amp_refused_without_cuda(tools, monkeypatch):
    train = _load_tool(tools, 'train')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='--amp needs a CUDA device'):
        train.setup_cfg(train.parse_args([tools.CLS_CFG, '--amp']))


@pytest.mark.parametrize('launcher', ['none', 'pytorch'])
def test_train_replaces_sync_bn_on_cpu(launcher, tools, monkeypatch):
    train = _load_tool(tools, 'train')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = train.setup_cfg(train.parse_args([
        tools.SEG_CFG, '--launcher', launcher, '--cfg-options',
        'model.decode_head.norm_cfg.type=SyncBN']))
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    if launcher == 'pytorch':
        assert cfg.model_wrapper_cfg.device_ids is None


def test_dist_backend_follows_cuda():
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='gloo'))))
    assert compat.resolve_dist_backend(cfg, cuda=True) == 'nccl'
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert compat.resolve_dist_backend(cfg, cuda=False) == 'gloo'
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='mpi'))))
    assert compat.resolve_dist_backend(cfg, cuda=True) == 'mpi'
    cfg = Config(dict(model=dict()))  # no env_cfg at all (mmengine default: nccl)
    assert compat.resolve_dist_backend(cfg, cuda=False) == 'gloo'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


def test_prepare_runtime_cfg_keeps_sync_bn_for_gpu_ddp():
    cfg = Config(dict(model=dict(head=dict(norm_cfg=dict(type='SyncBN'))), sync_bn='torch'))
    assert compat.prepare_runtime_cfg(cfg, 'pytorch', cuda=True) == []
    assert cfg.model.head.norm_cfg.type == 'SyncBN' and cfg.sync_bn == 'torch'
    notes = compat.prepare_runtime_cfg(cfg, 'none', cuda=True)
    assert cfg.model.head.norm_cfg.type == 'BN' and cfg.sync_bn is None
    assert len(notes) == 2


def test_sync_bn_to_bn_counts_nested_entries():
    cfg = dict(a=dict(norm_cfg=dict(type='SyncBN')),
               b=[dict(type='MMSyncBN'), dict(type='GN', num_groups=2)],
               c=(dict(norm=dict(type='BN')), dict(norm=dict(type=torch.nn.SyncBatchNorm))))
    assert compat.sync_bn_to_bn(cfg) == 3
    assert cfg['c'][1]['norm']['type'] == 'BN'
    assert cfg['a']['norm_cfg']['type'] == 'BN' and cfg['b'][0]['type'] == 'BN'
    assert cfg['b'][1]['type'] == 'GN'


def test_revert_sync_batchnorm_on_a_built_model():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.SyncBatchNorm(4))
    model = compat.revert_sync_batchnorm(model)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert model(torch.rand(2, 3, 4, 4)).shape == (2, 4, 4, 4)


# -------------------------------------------------------------- weights-only loading
def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_apply_compat_is_idempotent():
    before = list(torch.serialization.get_safe_globals())
    compat.apply_compat()
    compat.apply_compat()
    assert list(torch.serialization.get_safe_globals()) == before
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in compat.SAFE_GLOBAL_NAMES


def test_message_hub_content_loads_weights_only():
    buf = HistoryBuffer()
    for v in (1.0, 2.0, 4.0):
        buf.update(v)
    obj = dict(scalars={'loss': buf, 'acc': HistoryBuffer([np.float32(0.5)], [1])},
               eta=np.float64(3.5), count=np.int64(7), arr=np.arange(4, dtype=np.uint8))
    loaded = _roundtrip(obj)
    assert loaded['scalars']['loss'].mean() == pytest.approx(7 / 3)
    assert loaded['scalars']['acc'].current() == pytest.approx(0.5)
    assert loaded['eta'] == 3.5 and loaded['count'] == 7
    assert loaded['arr'].tolist() == [0, 1, 2, 3]


class _Gadget:
    """Pickles as ``getattr(<target>, <name>)``, as a crafted checkpoint could."""

    def __init__(self, target, name):
        self.target, self.name = target, name

    def __reduce__(self):
        return getattr, (self.target, self.name)


@pytest.mark.parametrize('target,name', [
    (HistoryBuffer, 'update'),        # an allowed class, but not a statistics method
    (HistoryBuffer, '__init__'),
    (np.ndarray, 'tofile'),           # writes files
])
def test_getattr_is_limited_to_history_buffer_statistics(target, name):
    with pytest.raises(pickle.UnpicklingError):
        _roundtrip(dict(x=_Gadget(target, name)))


def test_object_arrays_stay_rejected():
    with pytest.raises(pickle.UnpicklingError):
        _roundtrip(np.array([object()], dtype=object))
