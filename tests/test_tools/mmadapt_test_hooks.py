"""Test-only hooks for the tool tests (imported by tests/data/configs/testhooks_*.py
and the SPT test config through ``custom_imports``; the tests put this folder on
PYTHONPATH).

Importing this module with ``MMADAPT_TEST_KILL_DURING_WRITE=<name>[:<n>]`` in the
environment arms :func:`kill_during_write`: the process dies half-way through its
n-th (default first) write of a file whose name contains ``<name>``.
"""
import builtins
import os
import os.path as osp

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

INTERRUPT_EXIT_CODE = 17
KILLED_IN_WRITE_EXIT_CODE = 19
KILL_DURING_WRITE_ENV = 'MMADAPT_TEST_KILL_DURING_WRITE'


class _HalfWrite:
    """A file whose first ``write`` stores half of the data, flushes it to disk and
    ends the process (``os._exit``: no clean-up, as a kill or a crash)."""

    def __init__(self, f) -> None:
        self._f = f

    def write(self, data):
        self._f.write(data[:len(data) // 2])
        self._f.flush()
        os.fsync(self._f.fileno())
        os._exit(KILLED_IN_WRITE_EXIT_CODE)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def kill_during_write(name: str, occurrence: int = 1) -> None:
    """Patch ``builtins.open`` of this process so that its ``occurrence``-th opening
    for writing of a file whose base name contains ``name`` (the target itself, or
    a temporary file named after it) writes half of the data, then exits with
    ``KILLED_IN_WRITE_EXIT_CODE``. Writers that go through Python's ``open``
    (mmengine's local backend and CheckpointHook, projects.core.engine.atomic_io) are hit
    wherever they are in the write."""
    real_open = builtins.open
    count = [0]

    def open_(file, mode='r', *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        writing = any(m in mode for m in 'wxa+')
        if writing and isinstance(file, (str, os.PathLike)) and \
                name in osp.basename(os.fspath(file)):
            count[0] += 1
            if count[0] == occurrence:
                return _HalfWrite(f)
        return f

    builtins.open = open_


if os.environ.get(KILL_DURING_WRITE_ENV):
    _name, _, _n = os.environ[KILL_DURING_WRITE_ENV].partition(':')
    kill_during_write(_name, int(_n or 1))


@HOOKS.register_module()
class InterruptHook(Hook):
    """Kill the process right after the checkpoint of a given iteration / epoch.

    ``os._exit`` skips every remaining hook, ``after_train``/``after_run`` and all
    clean-up, as a crash or a pre-emption would. Runs after CheckpointHook (LOWEST);
    in distributed runs all ranks first wait until rank 0 has written the checkpoint
    (otherwise the launcher kills rank 0 mid-write when another rank exits).
    """

    priority = 'LOWEST'

    def __init__(self, after_iter=None, after_epoch=None):
        self.after_iter = after_iter
        self.after_epoch = after_epoch

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.after_iter is not None and runner.iter + 1 == self.after_iter:
            self._exit()

    def after_train_epoch(self, runner):
        if self.after_epoch is not None and runner.epoch + 1 == self.after_epoch:
            self._exit()

    @staticmethod
    def _exit():
        if get_dist_info()[1] > 1:
            barrier()
        os._exit(INTERRUPT_EXIT_CODE)


@HOOKS.register_module()
class DumpParamsHook(Hook):
    """Every rank saves its final model parameters as ``params_rank<r>.pth``, with
    the node and local rank torchrun gave it (``GROUP_RANK``, ``LOCAL_RANK``)."""

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rank, world_size = get_dist_info()
        params = {k: v.detach().cpu().clone() for k, v in model.named_parameters()}
        node = (int(os.environ.get('GROUP_RANK', 0)), int(os.environ.get('LOCAL_RANK', 0)))
        torch.save(dict(rank=rank, world_size=world_size, node=node, params=params),
                   osp.join(runner.work_dir, f'params_rank{rank}.pth'))
