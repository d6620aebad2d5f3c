"""``SPViTSearchHook``: runs an SPViT search inside an ordinary mmengine training run.

- checks at start-up that the backbone has gates (the FLOPs loss checked its target at build);
- keeps the gate group's learning rate constant (official: ``min_lr = arc_lr``);
- logs per-layer gate probabilities and the FLOPs of the current hard architecture;
- writes the architecture JSON (``spvit_arch_{epoch|iter}_{n}.json`` and
  ``spvit_arch.json``) atomically every ``interval`` and at the end;
- stops training after ``search_length`` epochs / iterations (official: 20 epochs);
- its state (files written, stopped) goes into the checkpoint for ``--resume``.
"""
import os.path as osp
from typing import Dict, List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .convert import derive_arch
from .flops import find_backbone, gated_layers, hard_arch_macs
from .optim import GATE_FLAG

CKPT_KEY = 'spvit_search'


@HOOKS.register_module()
class SPViTSearchHook(Hook):
    """Args:
        interval: write the architecture every ``interval`` epochs (``by_epoch``) or
            iterations.
        by_epoch: the unit of ``interval`` and ``search_length``.
        search_length: stop training after this many epochs / iterations (None: the
            train loop's own length).
        log_interval: iterations between gate logs.
        constant_gate_lr: hold the gate group at its initial lr (official); False lets
            the weights' schedule act on it too.
        extra_macs: MACs outside the backbone added to the logged FLOPs (the head).
    """
    priority = 'NORMAL'

    def __init__(self, interval: int = 10, by_epoch: bool = True,
                 search_length: Optional[int] = None, log_interval: int = 50,
                 constant_gate_lr: bool = True, extra_macs: int = 0) -> None:
        if interval < 1 or log_interval < 1 or (search_length is not None and search_length < 1):
            raise ValueError('SPViTSearchHook: interval, log_interval and search_length '
                             'must be >= 1.')
        self.interval, self.by_epoch = interval, by_epoch
        self.search_length, self.log_interval = search_length, log_interval
        self.constant_gate_lr, self.extra_macs = constant_gate_lr, extra_macs
        self.written: List[str] = []
        self.stopped = False

    # ---------------------------------------------------------------- set-up
    def before_run(self, runner) -> None:
        backbone = find_backbone(runner.model)
        gated_layers(backbone)  # clear error when there are no gates

    def before_train(self, runner) -> None:
        if self.constant_gate_lr and not self._gate_groups(runner):
            raise ValueError("SPViTSearchHook: the optimizer has no gate group; set "
                             "optim_wrapper.constructor='SPViTOptimWrapperConstructor' with "
                             'paramwise_cfg.gate_lr, or constant_gate_lr=False.')

    @staticmethod
    def _gate_groups(runner) -> List[dict]:
        wrapper = runner.optim_wrapper
        wrappers = wrapper.values() if hasattr(wrapper, 'values') else [wrapper]
        return [g for w in wrappers for g in w.optimizer.param_groups if g.get(GATE_FLAG)]

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.constant_gate_lr:
            for group in self._gate_groups(runner):
                # the schedulers record the lr they started from in initial_lr
                group['lr'] = group.get('initial_lr', group['lr'])

    # ------------------------------------------------------------- progress
    def gate_summary(self, runner) -> Dict[str, float]:
        backbone = find_backbone(runner.model)
        out = {'flops_arch': hard_arch_macs(backbone, extra_macs=self.extra_macs) / 1e9}
        for i, (attn, mlp) in enumerate(gated_layers(backbone)):
            if attn is not None:
                for name, p in zip(('g1x1', 'g3x3', 'gmsa'), torch.sigmoid(attn.theta).tolist()):
                    out[f'spvit/{name}.{i}'] = p
            if mlp is not None:
                out[f'spvit/ffn_keep.{i}'] = float((mlp.theta > 0).float().mean())
        return out

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        it = runner.iter + 1
        if it % self.log_interval == 0:
            summary = self.gate_summary(runner)
            for key, value in summary.items():
                runner.message_hub.update_scalar(f'train/{key}', value)
            arch = derive_arch(runner.model)
            keep = [arch.keep_count(i) for i in range(arch.num_layers)]
            runner.logger.info(f'SPViT iter {it}: {summary["flops_arch"]:.4g} GMACs, ops '
                               f'{arch.ops}, FFN keep {keep}')
        if not self.by_epoch:
            self._progress(runner, it, 'iter')

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch:
            self._progress(runner, runner.epoch + 1, 'epoch')

    def _progress(self, runner, step: int, unit: str) -> None:
        if step % self.interval == 0:
            self.write(runner, f'spvit_arch_{unit}_{step}.json')
        if self.search_length is not None and step >= self.search_length and not self.stopped:
            self.stopped = True
            runner.logger.info(f'SPViT search reached its length ({self.search_length} '
                               f'{unit}s): stopping.')
            runner.train_loop.stop_training = True

    def after_train(self, runner) -> None:
        self.write(runner, 'spvit_arch.json')

    def write(self, runner, name: str) -> str:
        arch = derive_arch(runner.model, source=name)
        arch.meta = dict(epoch=runner.epoch, iter=runner.iter,
                         gmacs=hard_arch_macs(find_backbone(runner.model),
                                              extra_macs=self.extra_macs) / 1e9)
        path = osp.join(runner.work_dir, name)
        arch.save(path)
        if name not in self.written:
            self.written.append(name)
        runner.logger.info(f'SPViT architecture written to {path}')
        return path

    # --------------------------------------------------------------- resume
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CKPT_KEY] = dict(written=list(self.written), stopped=self.stopped)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(CKPT_KEY)
        if state:
            self.written = list(state['written'])
            self.stopped = bool(state['stopped'])
