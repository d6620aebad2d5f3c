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
  complete model in time. With ``denoise=True`` the dispatchers' Gumbel noise follows
  the same cosine from 1 to 0, so the last iterations train on the deterministic
  masks ``g > 0`` that eval uses. Without it the logits stay unpolarised in a short
  run (every sigma(g) in (0.3, 0.7) after 10 epochs on val200), training drops about
  half of every layer's tokens at random, and eval's threshold then keeps 0 % or 100 %
  of a layer (README: 85.5 % complete, 75.5 % with sampled masks, 40.0 % in eval).
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


def expected_rate(logits: torch.Tensor, shift: float, noise: float) -> float:
    """The training masks' mean on these logits after adding ``shift`` to every bias:
    P(g + shift + noise * L > 0) = sigma((g + shift) / noise) for logistic L, the step
    1[g + shift > 0] without noise."""
    if noise == 0:
        return float(((logits + shift) > 0).float().mean())
    return float(torch.sigmoid((logits + shift) / noise).mean())


def solve_shift(logits: torch.Tensor, target: float, noise: float,
                steps: int = 60) -> float:
    """The one bias shift that gives ``logits`` the expected training rate ``target``
    under ``noise`` (bisection; monotone in the shift). All layers move together, so
    the layers keep the relative rates the task gradient gave them."""
    low, high = -float(logits.max()) - 50.0, -float(logits.min()) + 50.0
    for _ in range(steps):
        mid = 0.5 * (low + high)
        if expected_rate(logits, mid, noise) < target:
            low = mid
        else:
            high = mid
    return high


@HOOKS.register_module()
class DyTRateScheduleHook(Hook):
    """Anneal every ``TokenRateLoss`` target from ``start`` to its configured value over
    the first ``fraction`` of ``runner.max_iters`` (cosine), per iteration;
    ``control_bias``: also steer the dispatcher biases to it; ``denoise``: anneal the
    dispatchers' Gumbel noise from 1 to 0 on the same schedule (module docstring)."""

    def __init__(self, start: float = 1.0, fraction: float = 2 / 3,
                 control_bias: bool = False, denoise: bool = False) -> None:
        if not 0 < start <= 1:
            raise ValueError(f'DyTRateScheduleHook: start must be a rate in (0, 1], got '
                             f'{start}.')
        if not 0 < fraction <= 1:
            raise ValueError(f'DyTRateScheduleHook: fraction (of the training iterations '
                             f'the annealing takes) must be in (0, 1], got {fraction}.')
        self.start, self.fraction, self.control_bias = start, fraction, control_bias
        self.denoise = denoise
        self.finals: List[float] = []
        self.logits: List[torch.Tensor] = []  # this iteration's dispatcher scores
        self.handles: list = []

    def before_train(self, runner) -> None:
        self.terms = rate_losses(runner.model)
        self.finals = [t.target for t in self.terms]  # the configured r
        if self.control_bias and self.denoise:  # the exact steering reads the scores
            self.handles = [gate.score.register_forward_hook(self._record)
                            for gate in dispatchers(runner.model)]

    def _record(self, module, args, out) -> None:
        if module.training:
            self.logits.append(out.detach().flatten().float())

    def noise_at(self, iteration: int, max_iters: int) -> float:
        return annealed_target(1.0, 0.0, self.progress(iteration, max_iters))

    def progress(self, iteration: int, max_iters: int) -> float:
        return iteration / (self.fraction * max_iters)

    def target_at(self, final: float, iteration: int, max_iters: int) -> float:
        return annealed_target(self.start, final, self.progress(iteration, max_iters))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        for term, final in zip(self.terms, self.finals):
            term.target = self.target_at(final, runner.iter, runner.max_iters)
        self.logits = []
        if self.denoise:
            noise = self.noise_at(runner.iter, runner.max_iters)
            for gate in dispatchers(runner.model):
                gate.noise = noise

    @torch.no_grad()
    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.control_bias:
            return
        target = self.target_at(self.finals[0], runner.iter + 1, runner.max_iters)
        if self.denoise:
            # with little noise the rate is a near-step function of the bias: the
            # equal-logits shift below overshoots (0.84 -> 0.11 -> 0.92 on val200), so
            # solve for the shift on this iteration's scores
            if not self.logits:
                raise RuntimeError('DyTRateScheduleHook(control_bias=True, denoise=True) '
                                   'recorded no dispatcher scores in this iteration; '
                                   'the dispatchers must run in training mode.')
            shift = torch.tensor(solve_shift(torch.cat(self.logits), target, self.noise_at(
                runner.iter + 1, runner.max_iters)))
            all_reduce(shift, op='mean')  # every rank shifts by the same amount
            for gate in dispatchers(runner.model):
                gate.score.bias += float(shift)
            return
        if not outputs or 'token_rate' not in outputs:
            raise KeyError('DyTRateScheduleHook(control_bias=True) reads the training '
                           "rate from the iteration's 'token_rate' output (logged by "
                           'TokenRateLoss); none was returned.')
        rate = torch.as_tensor(outputs['token_rate'], dtype=torch.float32).clone()
        all_reduce(rate, op='mean')  # every rank shifts by the same amount
        shift = logit(target) - logit(float(rate))
        for gate in dispatchers(runner.model):
            gate.score.bias += shift

    def after_train(self, runner) -> None:
        for term, final in zip(self.terms, self.finals):  # eval and reports see r
            term.target = final
        for handle in self.handles:
            handle.remove()
        self.handles, self.logits = [], []
        if self.denoise:  # a later training run starts from the official sampling
            for gate in dispatchers(runner.model):
                gate.noise = 1.0


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
