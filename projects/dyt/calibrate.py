"""Set DyT dispatchers' eval activation rate on a batch, layer by layer: each
dispatcher's bias is shifted so that a chosen fraction of the decisions it makes on
this batch score above 0 (the eval mask): patch tokens for token dispatchers, samples
for layer dispatchers.

Two targets:

* :func:`calibrate_rate` -- one fixed rate in every layer (benchmarks with a
  controlled mask);
* :func:`calibrate_to_training` -- each layer's *expected training* rate, the mean of
  sigma(g) over the batch. Training samples the mask Bernoulli(sigma(g)) and the rate
  loss holds that mean at r, but eval keeps the tokens with g > 0; while the logits are
  not polarised the two differ widely (issue 24: 51 % in training, 81.5 % in eval).
  Matching them keeps, in each layer, the share of tokens the model was trained with,
  chosen by the learned ranking (our short-budget recipe, see the README).

The layers are walked in order with the already-shifted dispatchers, so each one is
calibrated on the inputs it will see in eval.
"""
from typing import Callable, Union

import torch
from torch import Tensor

from .dispatcher import LayerDispatcher, TokenDispatcher

DISPATCHERS = (TokenDispatcher, LayerDispatcher)
#: scores of one dispatcher on the batch -> the fraction of them to keep
LayerRate = Callable[[Tensor], float]


def _shift(score: torch.nn.Linear, inputs: Tensor, layer_rate: LayerRate) -> None:
    scores = score(inputs).flatten()
    rate = float(layer_rate(scores))
    score.bias -= torch.quantile(scores, 1 - rate)
    if scores.max() - scores.min() < 1e-9:  # identical inputs (the first layer's class
        # token): the decision cannot depend on the image; run the layer
        score.bias += 1.0


@torch.no_grad()
def _calibrate(model, images: Tensor, layer_rate: LayerRate) -> None:
    model.eval()
    x, ctx = model.embed(images)
    for i, block in enumerate(model.blocks):
        ctx = ctx.at_layer(i)
        gate = block.attn_gate
        if isinstance(gate, DISPATCHERS):  # decides on the block input
            _shift(gate.score, x[:, 0] if gate.per_sample else x[:, ctx.num_prefix:],
                   layer_rate)
        gate = block.mlp_gate
        if isinstance(gate, DISPATCHERS):
            merging = block.merger is not None and block.merger.needs_metric(ctx)
            y, metric = block.forward_attn(x, ctx, merging)
            if block.merger is not None:
                y, _ = block.merger(y, metric, ctx)
            _shift(gate.score, y[:, ctx.num_prefix:], layer_rate)
        x, ctx = block(x, ctx)


def calibrate_rate(model, images: Tensor, rate: float) -> None:
    """Every dispatcher of ``model`` (a ComposableViT) keeps ``rate`` of its decisions
    on ``images`` in eval."""
    if not 0 < rate <= 1:
        raise ValueError(f'rate must be in (0, 1], got {rate}.')
    _calibrate(model, images, lambda scores: rate)


def calibrate_to_training(model, images: Tensor) -> None:
    """Every dispatcher of ``model`` keeps, in eval, the share of decisions it would
    activate on average in training on ``images``: mean sigma(g)."""
    _calibrate(model, images, lambda scores: torch.sigmoid(scores).mean().item())


def calibrate(model, images: Tensor, target: Union[float, str]) -> None:
    """``target``: a rate in (0, 1] or ``'training'`` (see the module docstring)."""
    if target == 'training':
        calibrate_to_training(model, images)
    elif isinstance(target, (int, float)) and not isinstance(target, bool):
        calibrate_rate(model, images, float(target))
    else:
        raise ValueError(f"calibration target must be a rate in (0, 1] or 'training', "
                         f'got {target!r}.')
