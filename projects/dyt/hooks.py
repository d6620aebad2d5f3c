"""Runner hooks of our short-budget DyT recipe (not in the official code; README,
"Short-budget recipe").

* :class:`DyTRateScheduleHook` anneals the rate loss's target from ``start`` (1: the
  complete model) down to the configured r over the first ``fraction`` of the training
  iterations (cosine), then holds r. With dispatchers that start almost all-on
  (``bias_init``), the model leaves the complete model gradually instead of facing
  coin-flip masks from the first step. With ``control_bias=True`` it also *enforces*
  the schedule: after every iteration it shifts all dispatcher biases by
  logit(next target) - logit(measured training rate). Without it, AdamW at 1e-3 moves
  the rate too slowly for a 75-step budget (val200 run, README: the training rate
  stalled at 0.87 against a target of 0.5), so the rate loss alone cannot leave the
  complete model in time.
* :class:`DyTCalibrateHook` shifts each dispatcher's bias after the last training
  iteration so that eval (g > 0) keeps, per layer, the share of tokens it activated in
  training (``calibrate_to_training``), on images of the training split. It runs before
  the last checkpoint is written, so the saved model is the calibrated one.

Both derive everything from the iteration counter and the model, so a resumed run does
the same as an uninterrupted one.
"""
import math
from typing import List, Union

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..core.engine.ddp import unwrap_model
from ..core.engine.hooks.linear_probe_init_hook import split_loader
from .calibrate import DISPATCHERS, calibrate
from .losses import TokenRateLoss


def rate_losses(model) -> List[TokenRateLoss]:
    """The backbone's :class:`TokenRateLoss` terms, with an error naming the fix."""
    backbone = getattr(unwrap_model(model), 'backbone', None)
    terms = [t for t in getattr(backbone, 'aux_losses', ()) if isinstance(t, TokenRateLoss)]
    if not terms:
        raise ValueError('DyT hook: the model has no TokenRateLoss in '
                         "model.backbone.aux_losses; add aux_losses=[dict(type='TokenRate"
                         "Loss', target=r)] to the backbone or remove the hook.")
    return terms


def dispatchers(model) -> List[torch.nn.Module]:
    """Every DyT dispatcher (token or layer) of the model's backbone."""
    backbone = unwrap_model(model).backbone
    return [m for m in backbone.modules() if isinstance(m, DISPATCHERS)]


def logit(rate: float, eps: float = 1e-2) -> float:
    """log(p / (1 - p)), with p clipped to [eps, 1 - eps] (a target of 1 stays finite)."""
    rate = min(max(rate, eps), 1 - eps)
    return math.log(rate / (1 - rate))


def annealed_target(start: float, end: float, progress: float) -> float:
    """Cosine from ``start`` (progress 0) to ``end`` (progress >= 1)."""
    progress = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


@HOOKS.register_module()
class DyTRateScheduleHook(Hook):
    """Anneal every ``TokenRateLoss`` target from ``start`` to its configured value over
    the first ``fraction`` of ``runner.max_iters`` (cosine), per iteration;
    ``control_bias``: also steer the dispatcher biases to it (module docstring)."""

    def __init__(self, start: float = 1.0, fraction: float = 2 / 3,
                 control_bias: bool = False) -> None:
        if not 0 < start <= 1:
            raise ValueError(f'DyTRateScheduleHook: start must be a rate in (0, 1], got '
                             f'{start}.')
        if not 0 < fraction <= 1:
            raise ValueError(f'DyTRateScheduleHook: fraction (of the training iterations '
                             f'the annealing takes) must be in (0, 1], got {fraction}.')
        self.start, self.fraction, self.control_bias = start, fraction, control_bias
        self.finals: List[float] = []

    def before_train(self, runner) -> None:
        self.terms = rate_losses(runner.model)
        self.finals = [t.target for t in self.terms]  # the configured r

    def target_at(self, final: float, iteration: int, max_iters: int) -> float:
        return annealed_target(self.start, final, iteration / (self.fraction * max_iters))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        for term, final in zip(self.terms, self.finals):
            term.target = self.target_at(final, runner.iter, runner.max_iters)

    @torch.no_grad()
    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.control_bias:
            return
        if not outputs or 'token_rate' not in outputs:
            raise KeyError('DyTRateScheduleHook(control_bias=True) reads the training '
                           "rate from the iteration's 'token_rate' output (logged by "
                           'TokenRateLoss); none was returned.')
        rate = torch.as_tensor(outputs['token_rate'], dtype=torch.float32).clone()
        all_reduce(rate, op='mean')  # every rank shifts by the same amount
        target = self.target_at(self.finals[0], runner.iter + 1, runner.max_iters)
        shift = logit(target) - logit(float(rate))
        for gate in dispatchers(runner.model):
            gate.score.bias += shift

    def after_train(self, runner) -> None:
        for term, final in zip(self.terms, self.finals):  # eval and reports see r
            term.target = final


@HOOKS.register_module()
class DyTCalibrateHook(Hook):
    """After the last training iteration, calibrate the dispatchers on the first
    ``num_images`` images of the training split (test pipeline, no shuffling)
    to ``target``: ``'training'`` (each layer's expected training rate) or a rate."""

    priority = 'LOW'  # before CheckpointHook (VERY_LOW) saves the last checkpoint

    def __init__(self, target: Union[str, float] = 'training', num_images: int = 256) -> None:
        if num_images <= 0:
            raise ValueError(f'DyTCalibrateHook: num_images must be positive, got '
                             f'{num_images}.')
        if target != 'training' and not (isinstance(target, (int, float))
                                         and 0 < target <= 1):
            raise ValueError(f"DyTCalibrateHook: target must be 'training' or a rate in "
                             f'(0, 1], got {target!r}.')
        self.target, self.num_images = target, num_images

    @torch.no_grad()
    def images(self, runner) -> torch.Tensor:
        model = unwrap_model(runner.model)
        split = runner.cfg.train_dataloader.dataset.get('split', 'train')
        batches, count = [], 0
        for data in split_loader(runner.cfg, split):
            batches.append(model.data_preprocessor(data, False)['inputs'])
            count += len(batches[-1])
            if count >= self.num_images:
                break
        return torch.cat(batches)[:self.num_images]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if runner.iter + 1 < runner.max_iters:
            return
        model = unwrap_model(runner.model)
        was_training = model.training
        calibrate(model.backbone, self.images(runner), self.target)
        model.train(was_training)
        runner.logger.info(f'DyT: dispatchers calibrated to the {self.target} rate on '
                           f'{self.num_images} training images')
