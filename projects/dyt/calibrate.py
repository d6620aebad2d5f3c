"""Set DyT dispatchers to a chosen activation rate on a batch (for benchmarks with a
controlled mask): layer by layer, each dispatcher's bias is shifted so that the given
fraction of the decisions it makes on this batch score above 0 (the eval mask): patch
tokens for token dispatchers, samples for layer dispatchers."""
import torch
from torch import Tensor

from .dispatcher import LayerDispatcher, TokenDispatcher

DISPATCHERS = (TokenDispatcher, LayerDispatcher)


def _shift(score: torch.nn.Linear, inputs: Tensor, rate: float) -> None:
    scores = score(inputs).flatten()
    score.bias -= torch.quantile(scores, 1 - rate)
    if scores.max() - scores.min() < 1e-9:  # identical inputs (the first layer's class
        # token): the decision cannot depend on the image; run the layer
        score.bias += 1.0


@torch.no_grad()
def calibrate_rate(model, images: Tensor, rate: float) -> None:
    if not 0 < rate <= 1:
        raise ValueError(f'rate must be in (0, 1], got {rate}.')
    model.eval()
    x, ctx = model.embed(images)
    for i, block in enumerate(model.blocks):
        ctx = ctx.at_layer(i)
        gate = block.attn_gate
        if isinstance(gate, DISPATCHERS):  # decides on the block input
            _shift(gate.score, x[:, 0] if gate.per_sample else x[:, ctx.num_prefix:], rate)
        gate = block.mlp_gate
        if isinstance(gate, DISPATCHERS):
            merging = block.merger is not None and block.merger.needs_metric(ctx)
            y, metric = block.forward_attn(x, ctx, merging)
            if block.merger is not None:
                y, _ = block.merger(y, metric, ctx)
            _shift(gate.score, y[:, ctx.num_prefix:], rate)
        x, ctx = block(x, ctx)
