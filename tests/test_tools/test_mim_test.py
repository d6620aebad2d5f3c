"""What ``mim test mmseg CONFIG --checkpoint CKPT`` runs -- mmseg's own tools/test.py
from the installed package -- works on our configs from outside the repository: the
``projects`` package is found because it is pip-installed, not because of sys.path."""
import os
import os.path as osp
import subprocess
import sys

import mmseg


def test_mmseg_own_test_tool_runs_our_config(resume_runs, tools, data_root):
    mmseg_test = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'test.py')
    assert osp.isfile(mmseg_test)
    ckpt = osp.join(resume_runs['seg']['full'], tools.RESUME_CASES['seg'][3])
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    result = subprocess.run(
        [sys.executable, mmseg_test, tools.SEG_CFG, ckpt,
         '--work-dir', osp.join(data_root, 'work_mim_test')],
        cwd=data_root, env=env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert 'mIoU' in log
