"""Test-only hook of the SPT tool tests (imported through custom_imports; the tests
put tests/test_spt on PYTHONPATH)."""
import os.path as osp

import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpTrainableHook(Hook):
    """Every rank saves its trainable parameters, the sparse indices and the sizes of
    its optimizer state as ``trainable_rank<r>.pth``."""

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rank, world_size = get_dist_info()
        names = {id(p): n for n, p in model.named_parameters()}
        trainable = {n: p.detach().clone() for n, p in model.named_parameters()
                     if p.requires_grad}
        indices = {n: m.index.clone() for n, m in model.named_modules()
                   if hasattr(m, 'index') and torch.is_tensor(m.index)}
        state = runner.optim_wrapper.optimizer.state
        state_sizes = {names[id(p)]: int(s['exp_avg'].numel()) for p, s in state.items()
                       if 'exp_avg' in s}
        torch.save(dict(rank=rank, world_size=world_size, trainable=trainable,
                        indices=indices, state_sizes=state_sizes),
                   osp.join(runner.work_dir, f'trainable_rank{rank}.pth'))
