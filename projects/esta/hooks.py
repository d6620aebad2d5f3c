"""The hooks of ESTA training.

* :class:`StitchInitHook` -- least-squares init of the stitching layers from one batch
  of training images before training (SN-Net); skipped when the loaded weights are
  already initialised (``--resume``, ``load_from`` of a trained model).
* :class:`ESTASamplingHook` -- one stitch per iteration (uniform during warm-up, then
  interval + softmax of the importance scores), the SNIP importance
  ``Q = sum |theta * dL/dtheta|`` over the backbone's trainable parameters that the
  stitch used (their gradients are read as they are accumulated, before the optimizer
  clears them), its moving average, and the deployment list after training
  (``esta_deploy.json``: the top-scored stitch per FLOPs interval). Its sampler state
  (scores, counts, generator) is stored in every checkpoint and restored on resume.
"""
import json
import os.path as osp
from typing import List, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..core.engine.atomic_io import atomic_write_text
from ..core.engine.ddp import unwrap_model
from .backbone import StitchedViT
from .sampler import StitchSampler, broadcast_int, mean_over_ranks

CKPT_KEY = 'esta_sampler'
DEPLOY_FILE = 'esta_deploy.json'


def stitched_backbone(model) -> StitchedViT:
    model = unwrap_model(model)
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, StitchedViT):
        raise TypeError(f'ESTA hooks need a model whose backbone is a StitchedViT, got '
                        f'{type(backbone).__name__}; use a configs/esta config.')
    return backbone


@HOOKS.register_module()
class StitchInitHook(Hook):
    """Least-squares init of every stitching layer from ``num_images`` training images
    (SN-Net: 100 for classification, 50 for segmentation); ``mode``: 'average' of the
    per-stitch solutions (SN-Net) or one 'joint' solve (see
    ``StitchedViT.init_stitching_layers``)."""

    priority = 'ABOVE_NORMAL'

    def __init__(self, num_images: int = 100, mode: str = 'average') -> None:
        self.num_images = num_images
        self.mode = mode

    def before_train(self, runner) -> None:
        backbone = stitched_backbone(runner.model)
        if bool(backbone.stitch_initialised):
            print_log('ESTA: stitching layers already initialised (resumed or loaded); '
                      'least-squares init skipped', 'current')
            return
        model = unwrap_model(runner.model)
        images, total = [], 0
        # the init must not shift the training RNG (data order, dropout)
        with torch.random.fork_rng():
            for data in runner.train_dataloader:
                images.append(model.data_preprocessor(data, True)['inputs'])
                total += len(images[-1])
                if total >= self.num_images:
                    break
        batch = torch.cat(images)[:self.num_images]
        device = next(backbone.parameters()).device
        residual = backbone.init_stitching_layers(batch.to(device), self.mode)
        # every rank holds rank 0's solution (data shards differ between ranks)
        from mmengine.dist import broadcast
        for layer in backbone.stitch_layers:
            broadcast(layer.weight.data, 0)
            broadcast(layer.bias.data, 0)
        mean = sum(residual.values()) / max(len(residual), 1)
        print_log(f'ESTA: least-squares init of {len(residual)} stitching layers on '
                  f'{len(batch)} images, mean relative residual {mean:.4f}', 'current')


@HOOKS.register_module()
class ESTASamplingHook(Hook):
    """Args:
        num_intervals: FLOPs intervals (thesis: about 15).
        momentum: of the importance moving average (thesis: 0.9).
        warmup_ratio: fraction of the training iterations with uniform sampling (ours:
            0.1, the length of the learning-rate warm-up of the recipe).
        temperature: of the softmax over normalised scores.
        seed: of the sampler's own generator (rank 0's draws are broadcast).
        eval_stitch: the stitch validation/testing runs; None = the largest anchor.
    """

    priority = 'NORMAL'

    def __init__(self, num_intervals: int = 15, momentum: float = 0.9,
                 warmup_ratio: float = 0.1, temperature: float = 1.0, seed: int = 0,
                 eval_stitch: Optional[int] = None) -> None:
        self.num_intervals = num_intervals
        self.momentum = momentum
        self.warmup_ratio = warmup_ratio
        self.temperature = temperature
        self.seed = seed
        self.eval_stitch = eval_stitch
        self.sampler: Optional[StitchSampler] = None
        self._pending = None
        self._handles: List = []
        self._q = 0.0
        self.current = None

    # ------------------------------------------------------------------ set-up
    def build_sampler(self, backbone: StitchedViT) -> StitchSampler:
        flops = [backbone.stitch_macs(s) for s in range(backbone.num_stitches)]
        return StitchSampler(flops, self.num_intervals, self.momentum, self.temperature,
                             self.seed)

    def _accumulate(self, param: torch.Tensor) -> None:
        if param.grad is not None:
            self._q += float((param.detach() * param.grad.detach()).abs().sum())

    def attach(self, backbone: StitchedViT) -> None:
        """Read the SNIP term of every trainable backbone parameter as its gradient is
        accumulated (parameters a stitch does not use get no gradient)."""
        self.detach()
        for param in backbone.parameters():
            if param.requires_grad:
                self._handles.append(param.register_post_accumulate_grad_hook(self._accumulate))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def before_train(self, runner) -> None:
        backbone = stitched_backbone(runner.model)
        self.sampler = self.build_sampler(backbone)
        if self._pending is not None:
            self.sampler.load_state_dict(self._pending['sampler'])
            self._pending = None
        self.warmup_iters = int(round(self.warmup_ratio * runner.max_iters))
        self.attach(backbone)
        # until the first iteration the model is the largest anchor: an LP-FT head
        # (LinearProbeInitHook, priority VERY_LOW, runs after this hook) is fitted on
        # the distillation teacher's features
        backbone.set_stitch(backbone.teacher_stitch)
        print_log(f'ESTA: {len(self.sampler)} stitches in {len(self.sampler.intervals)} '
                  f'FLOPs intervals, {self.warmup_iters} warm-up iterations', 'current')

    # --------------------------------------------------------------- iterations
    def choose(self, iteration: int) -> int:
        """The stitch of ``iteration``, the same on every rank."""
        return broadcast_int(self.sampler.sample(uniform=iteration < self.warmup_iters))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.current = self.choose(runner.iter)
        stitched_backbone(runner.model).set_stitch(self.current)
        self._q = 0.0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        q = mean_over_ranks(self._q)
        self.sampler.update(self.current, q)
        runner.message_hub.update_scalar('train/esta_stitch', self.current)
        runner.message_hub.update_scalar('train/esta_importance', q)

    def after_train(self, runner) -> None:
        self.detach()
        backbone = stitched_backbone(runner.model)
        deploy = self.sampler.best_per_interval()
        if is_main_process():
            text = json.dumps(dict(deploy=deploy, scores=self.sampler.scores.tolist(),
                                   counts=self.sampler.counts.tolist(),
                                   flops=self.sampler.flops.tolist()), indent=1)
            atomic_write_text(osp.join(runner.work_dir, DEPLOY_FILE), text)
        best = [d['stitch'] for d in deploy]
        print_log(f'ESTA: deploy stitches {best} (top score per FLOPs interval), written '
                  f'to {DEPLOY_FILE}', 'current')
        backbone.set_stitch(self._eval_stitch(backbone))

    # ------------------------------------------------------------ val / test
    def _eval_stitch(self, backbone: StitchedViT) -> int:
        return backbone.teacher_stitch if self.eval_stitch is None else self.eval_stitch

    def before_val_epoch(self, runner) -> None:
        backbone = stitched_backbone(runner.model)
        self._train_stitch = backbone.stitch
        backbone.set_stitch(self._eval_stitch(backbone))

    def after_val_epoch(self, runner, metrics=None) -> None:
        stitched_backbone(runner.model).set_stitch(self._train_stitch)

    def before_test_epoch(self, runner) -> None:
        backbone = stitched_backbone(runner.model)
        backbone.set_stitch(self._eval_stitch(backbone))

    # -------------------------------------------------------------- checkpoint
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.sampler is not None:
            checkpoint[CKPT_KEY] = dict(sampler=self.sampler.state_dict())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(CKPT_KEY)
        if state is None:
            return
        if self.sampler is not None:
            self.sampler.load_state_dict(state['sampler'])
        else:
            self._pending = state
