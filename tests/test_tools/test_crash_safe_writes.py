"""Crash-safe state files (``projects/core/engine/atomic_io.py``, ``atomic_checkpoints.py``).

* in-process: an interrupted atomic write leaves the old file; importing
  ``projects`` routes mmengine's local writes and ``last_checkpoint`` through it;
* end to end (``killed_in_write_runs`` in conftest.py): the 3-epoch cls run of the
  resume tests is killed half-way through writing ``epoch_2.pth``, or through its
  ``last_checkpoint`` pointer; no half-written file is left for a later run, and
  ``--resume`` ends with the weights of the uninterrupted run.
"""
import os
import os.path as osp

import pytest
import torch

import projects  # noqa: F401  (installs the atomic writers)
from projects.core.runtime import atomic_checkpoints
from projects.core.engine.atomic_io import atomic_open, atomic_torch_save

CASES = ('checkpoint', 'last_checkpoint')


def test_interrupted_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / 'state.pth'
    atomic_torch_save({'step': 1}, path)
    with pytest.raises(RuntimeError, match='killed'):
        with atomic_open(path, 'wb') as f:
            f.write(b'half of a new checkpoint')
            raise RuntimeError('killed')
    assert torch.load(path, weights_only=True) == {'step': 1}
    assert os.listdir(tmp_path) == ['state.pth']  # the temporary file is gone
    with pytest.raises(ValueError, match='whole files'):
        atomic_open(path, 'ab').__enter__()


def test_mmengine_writes_go_through_atomic_io(tmp_path):
    from mmengine.fileio import dump, get_file_backend
    from mmengine.hooks import checkpoint_hook
    atomic_checkpoints.install()  # a second install changes nothing
    assert atomic_checkpoints.installed()
    assert type(get_file_backend(str(tmp_path / 'x.pth'))) is \
        atomic_checkpoints.AtomicLocalBackend
    assert type(get_file_backend(backend_args=dict(backend='local'))) is \
        atomic_checkpoints.AtomicLocalBackend
    dump({'a': 1}, str(tmp_path / 'a.json'))
    with checkpoint_hook.open(str(tmp_path / 'last_checkpoint'), 'w') as f:
        f.write('epoch_1.pth')
    with checkpoint_hook.open(str(tmp_path / 'last_checkpoint')) as f:
        assert f.read() == 'epoch_1.pth'
    assert sorted(os.listdir(tmp_path)) == ['a.json', 'last_checkpoint']


@pytest.mark.parametrize('case', CASES)
def test_killed_during_write_leaves_no_partial_file(case, killed_in_write_runs, tools):
    r = killed_in_write_runs[case]
    assert r['crash'].returncode == tools.KILLED_IN_WRITE_EXIT_CODE, \
        r['crash'].stdout[-4000:]
    snapshot = r['snapshot']  # the work dir as the process left it
    files = os.listdir(snapshot)
    assert 'epoch_1.pth' in files
    # what a later run may pick up: every checkpoint under its final name, and the
    # checkpoint last_checkpoint points to, load completely
    for name in files:
        if name.endswith('.pth') and not name.startswith('.'):
            tools.load_ckpt(osp.join(snapshot, name))
    with open(osp.join(snapshot, 'last_checkpoint')) as f:
        last = f.read().strip()
    assert osp.dirname(last) == r['dir']
    tools.load_ckpt(osp.join(snapshot, osp.basename(last)))


@pytest.mark.parametrize('case', CASES)
def test_resume_after_kill_during_write_matches_uninterrupted_run(
        case, killed_in_write_runs, resume_runs, tools):
    r = killed_in_write_runs[case]
    log = tools.check(r['resume'])
    assert 'resumed epoch: 1' in log, log[-3000:]  # the last complete pointer
    ckpt_n = tools.RESUME_CASES['cls'][3]
    full = tools.load_ckpt(osp.join(resume_runs['cls']['full'], ckpt_n))
    resumed = tools.load_ckpt(osp.join(r['dir'], ckpt_n))
    assert full['state_dict'].keys() == resumed['state_dict'].keys()
    for key, value in full['state_dict'].items():
        assert torch.equal(value, resumed['state_dict'][key]), key
    dump_full = tools.load_ckpt(osp.join(resume_runs['cls']['full'], 'params_rank0.pth'))
    dump_resumed = tools.load_ckpt(osp.join(r['dir'], 'params_rank0.pth'))
    assert dump_full['params'].keys() == dump_resumed['params'].keys()
    for key, value in dump_full['params'].items():
        assert torch.equal(value, dump_resumed['params'][key]), key
