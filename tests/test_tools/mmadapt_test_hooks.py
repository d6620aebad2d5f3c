"""Test-only hooks for the tool tests (imported by tests/data/configs/testhooks_*.py
through ``custom_imports``; the tests put this folder on PYTHONPATH)."""
import os
import os.path as osp

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

INTERRUPT_EXIT_CODE = 17


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
    """Every rank saves its final model parameters as ``params_rank<r>.pth``."""

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rank, world_size = get_dist_info()
        params = {k: v.detach().cpu().clone() for k, v in model.named_parameters()}
        torch.save(dict(rank=rank, world_size=world_size, params=params),
                   osp.join(runner.work_dir, f'params_rank{rank}.pth'))
