"""Running statistics for batch norms that have never seen data, before training.

Why: a model assembled from parts can carry fresh batch norms (SPViT's compact convs
start from running mean 0 / variance 1, as the official fine-tune does). Training
normalises with batch statistics, but anything that reads the model in eval mode
before the first step sees the fresh buffers instead: the LP-FT head
(:class:`LinearProbeInitHook`) is then fitted to features the trained model never
produces (measured on an SPViT compact model: probe loss 0.85 on val200, training loss
17.5 ten steps later, at a learning rate of 8e-6). This hook fills those buffers with
the exact average of the training split's batch statistics, computed with the model as
training runs it, so eval mode starts where training does.
"""
from typing import List

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch import nn

from ..ddp import unwrap_model
from .linear_probe_init_hook import split_loader


def fresh_batch_norms(model: nn.Module) -> List[nn.modules.batchnorm._BatchNorm]:
    """Batch norms with running statistics that never saw a batch."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            and int(m.num_batches_tracked) == 0]


@torch.no_grad()
def calibrate_batch_norms(model: nn.Module, norms: List[nn.modules.batchnorm._BatchNorm],
                          loader, max_images: int) -> int:
    """Set ``norms``' running statistics to the average batch statistics of up to
    ``max_images`` images of ``loader``; the rest of the model runs in eval mode (no
    dropout, other norms as they are). Returns the number of images used."""
    was_training = model.training
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    seen = 0
    try:
        with torch.random.fork_rng():  # the calibration must not shift training's RNG
            for data in loader:
                batch = model.data_preprocessor(data, False)
                model.extract_feat(batch['inputs'])
                seen += len(batch['inputs'])
                if seen >= max_images:
                    break
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return seen


@HOOKS.register_module()
class FreshBNCalibrationHook(Hook):
    """Before training (not on resume), give every batch norm that never saw a batch the
    running statistics of the ``split`` split (test pipeline, at most ``max_images``).
    Runs before :class:`LinearProbeInitHook` (priority VERY_LOW). Under DDP each rank
    reads its shard and the statistics are averaged over ranks."""

    priority = 'BELOW_NORMAL'

    def __init__(self, split: str = 'train', max_images: int = 800) -> None:
        if max_images < 1:
            raise ValueError(f'FreshBNCalibrationHook: max_images must be >= 1, got '
                             f'{max_images}.')
        self.split, self.max_images = split, max_images

    def before_train(self, runner) -> None:
        if runner.iter > 0:
            return
        model = unwrap_model(runner.model)
        norms = fresh_batch_norms(model)
        if not norms:
            return
        seen = calibrate_batch_norms(model, norms, split_loader(runner.cfg, self.split, 50),
                                     self.max_images)
        if get_world_size() > 1:
            for m in norms:
                all_reduce(m.running_mean, 'mean')
                all_reduce(m.running_var, 'mean')
        runner.logger.info(f'BN calibration: running statistics of {len(norms)} fresh batch '
                           f'norms from {seen} {self.split} images')
