"""``tools/train.py --resume`` repeats an uninterrupted seeded run exactly.

Cases (``RESUME_CASES`` in conftest.py, runs made by the ``resume_runs`` fixture):

* mmpretrain, epoch-based: 3 epochs, killed right after the epoch-1 checkpoint,
  resumed with ``--resume`` (latest checkpoint of the work dir);
* mmseg, iteration-based: 8 iterations, killed right after the iteration-4
  checkpoint, resumed with ``--resume <checkpoint>`` (mmengine replays the 4 trained
  batches through the pipeline before continuing);
* DyT (mmpretrain, epoch-based, Gumbel-noise dispatchers and the distillation pass):
  as the first case, resumed with ``--resume <checkpoint>``.

Both tiny models use dropout and drop-path and validate at the checkpoint step. The
control resumes from the same checkpoint without its RNG states and must *not*
match, which shows the comparison can fail.
"""
import os.path as osp
import subprocess
import sys

import pytest
import torch

import projects  # noqa: F401  (allows weights-only loading of mmengine checkpoints)

LIBS = ('cls', 'seg', 'dyt')


@pytest.mark.parametrize('lib', LIBS)
def test_interrupted_after_checkpoint(lib, resume_runs, tools):
    r = resume_runs[lib]
    _, _, ckpt_k, ckpt_n = tools.RESUME_CASES[lib]
    tools.check(r['full_result'])
    tools.check(r['cut_result'], tools.INTERRUPT_EXIT_CODE)
    assert osp.exists(osp.join(r['full'], ckpt_n))
    # killed right after the checkpoint: it is the only one, and the after-train
    # hooks (DumpParamsHook) never ran
    assert [f for f in r['cut_files'] if f.endswith('.pth')] == [ckpt_k]
    assert 'rng_state' in tools.load_ckpt(osp.join(r['cut'], ckpt_k))


@pytest.mark.parametrize('lib', LIBS)
def test_resume_reproduces_uninterrupted_run(lib, resume_runs, tools):
    r = resume_runs[lib]
    _, _, ckpt_k, ckpt_n = tools.RESUME_CASES[lib]
    assert 'cut_resume_result' in r, 'the interrupted run left no checkpoint'
    log = tools.check(r['cut_resume_result'])
    assert 'resumed epoch' in log, log[-3000:]
    full = tools.load_ckpt(osp.join(r['full'], ckpt_n))
    resumed = tools.load_ckpt(osp.join(r['cut'], ckpt_n))
    assert (full['meta']['epoch'], full['meta']['iter']) == \
        (resumed['meta']['epoch'], resumed['meta']['iter'])
    assert full['state_dict'].keys() == resumed['state_dict'].keys()
    for key, value in full['state_dict'].items():
        assert torch.equal(value, resumed['state_dict'][key]), key
    # optimizer moments too
    state_full, state_resumed = full['optimizer']['state'], resumed['optimizer']['state']
    assert state_full.keys() == state_resumed.keys()
    for idx, moments in state_full.items():
        for name, value in moments.items():
            assert torch.equal(value, state_resumed[idx][name]), (idx, name)
    # and the parameters the process held when training ended
    dump_full = tools.load_ckpt(osp.join(r['full'], 'params_rank0.pth'))['params']
    dump_resumed = tools.load_ckpt(osp.join(r['cut'], 'params_rank0.pth'))['params']
    for key, value in dump_full.items():
        assert torch.equal(value, dump_resumed[key]), key


@pytest.mark.parametrize('lib', LIBS)
def test_resume_without_rng_state_differs(lib, resume_runs, tools):
    r = resume_runs[lib]
    _, _, _, ckpt_n = tools.RESUME_CASES[lib]
    assert 'ctrl_resume_result' in r, 'the interrupted run left no checkpoint'
    tools.check(r['ctrl_resume_result'])
    full = tools.load_ckpt(osp.join(r['full'], ckpt_n))['state_dict']
    control = tools.load_ckpt(osp.join(r['ctrl'], ckpt_n))['state_dict']
    assert any(not torch.equal(v, control[k]) for k, v in full.items())


def test_runner_checkpoints_load_weights_only(resume_runs, tools):
    """Checkpoints written by the runner load with ``weights_only=True`` once
    ``projects`` is imported (tests/conftest.py does), as ``resume``/``load_from``
    need under torch >= 2.6."""
    for lib, (_, _, ckpt_k, ckpt_n) in tools.RESUME_CASES.items():
        for name in (ckpt_k, ckpt_n):
            ckpt = tools.load_ckpt(osp.join(resume_runs[lib]['full'], name))
            assert {'meta', 'state_dict', 'message_hub', 'optimizer',
                    'param_schedulers', 'rng_state'} <= set(ckpt)
            buffers = ckpt['message_hub']['log_scalars']
            assert buffers and all(type(b).__name__ == 'HistoryBuffer'
                                   for b in buffers.values())
            assert buffers['train/loss'].mean() > 0


def test_weights_only_load_fails_without_projects(resume_runs, tools):
    """The fix is what makes the load above work: plain torch refuses the file."""
    ckpt = osp.join(resume_runs['cls']['full'], tools.RESUME_CASES['cls'][3])
    result = subprocess.run(
        [sys.executable, '-c', f'import torch; torch.load({ckpt!r}, weights_only=True)'],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert 'Weights only load failed' in result.stderr
    assert 'HistoryBuffer' in result.stderr or 'numpy' in result.stderr
