"""The CPU / single-process fixes hold outside our tools: mmseg's own tools/train.py
(what ``mim train mmseg`` runs) trains our config with SyncBN, on one process and under
torchrun, because importing ``projects`` wraps ``Runner.from_cfg``
(projects/core/runtime/runner_compat.py)."""
import os
import os.path as osp
import subprocess
import sys

import mmseg
from mmengine.config import Config
from mmengine.runner import Runner

from projects.core.runtime import runner_compat

MMSEG_TRAIN = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
TWO_ITERS = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
             'default_hooks.checkpoint.interval=2']


def test_patch_is_applied_once():
    assert runner_compat.is_patched()
    wrapper = Runner.__dict__['from_cfg'].__func__
    assert not getattr(wrapper.__wrapped__, runner_compat._MARK, False)  # wraps mmengine's
    assert runner_compat.patch_runner_from_cfg() is False  # idempotent
    assert Runner.__dict__['from_cfg'].__func__ is wrapper


def test_adapt_runner_cfg_on_cpu_and_gpu():
    def cfg(launcher):
        return dict(launcher=launcher, sync_bn='torch',
                    model=dict(head=dict(norm_cfg=dict(type='MMSyncBN'))))

    cpu_dist = cfg('pytorch')  # a plain dict, no env_cfg: mmengine would pick nccl
    notes = runner_compat.adapt_runner_cfg(cpu_dist, cuda=False)
    assert cpu_dist['model']['head']['norm_cfg']['type'] == 'BN'
    assert cpu_dist['env_cfg']['dist_cfg']['backend'] == 'gloo'
    assert cpu_dist['model_wrapper_cfg']['device_ids'] is None and cpu_dist['sync_bn'] is None
    assert len(notes) == 4
    assert runner_compat.adapt_runner_cfg(cpu_dist, cuda=False) == []  # silent the 2nd time

    gpu_dist = Config(cfg('pytorch'))
    assert runner_compat.adapt_runner_cfg(gpu_dist, cuda=True) == []
    assert gpu_dist.model.head.norm_cfg.type == 'MMSyncBN' and 'env_cfg' not in gpu_dist

    gpu_single = Config(cfg('none'))
    runner_compat.adapt_runner_cfg(gpu_single, cuda=True)
    assert gpu_single.model.head.norm_cfg.type == 'BN' and 'env_cfg' not in gpu_single


def _run(cmd, cwd):
    # like `mim train`: outside the repository, `projects` found because it is installed
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    return log


def test_mmseg_train_tool_one_process_mmsyncbn(tools, data_root):
    # mmcv's SyncBatchNorm asks for the process group's size when it is built, so
    # without the fix the model cannot even be built on one process
    work = osp.join(data_root, 'work_mmseg_train_mmsyncbn')
    log = _run([sys.executable, MMSEG_TRAIN, tools.SEG_CFG, '--work-dir', work,
                '--cfg-options', 'model.decode_head.norm_cfg.type=MMSyncBN', *TWO_ITERS],
               data_root)
    assert '1 SyncBN norm config(s) replaced by BN (no CUDA device' in log
    assert osp.isfile(osp.join(work, 'iter_2.pth'))


def test_mmseg_train_tool_torchrun_on_cpu(tools, data_root):
    # mmseg's runtime default is nccl; mmengine's init_dist calls torch.cuda.set_device
    work = osp.join(data_root, 'work_mmseg_train_torchrun')
    log = _run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                '--master_port', str(tools.free_port()), MMSEG_TRAIN, tools.SEG_CFG,
                '--launcher', 'pytorch', '--work-dir', work, '--cfg-options',
                'model.decode_head.norm_cfg.type=SyncBN', 'env_cfg.dist_cfg.backend=nccl',
                *TWO_ITERS], data_root)
    for note in ('SyncBN norm config(s) replaced by BN', 'DDP without device_ids',
                 'dist backend nccl -> gloo'):
        assert note in log
    assert 'Distributed training: True' in log and 'GPU number: 2' in log  # 2 processes
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
