"""Set DyT dispatchers to a chosen activation rate on a batch (for benchmarks with a
controlled mask): layer by layer, each dispatcher's bias is shifted so that the given
fraction of the patch tokens reaching it score above 0 (the eval mask)."""
import torch
from torch import Tensor


@torch.no_grad()
def calibrate_rate(model, images: Tensor, rate: float) -> None:
    if not 0 < rate <= 1:
        raise ValueError(f'rate must be in (0, 1], got {rate}.')
    model.eval()
    x, ctx = model.embed(images)
    for i, block in enumerate(model.blocks):
        ctx = ctx.at_layer(i)
        gate = block.mlp_gate
        if gate is not None and hasattr(gate, 'score'):
            merging = block.merger is not None and block.merger.needs_metric(ctx)
            y, metric = block.forward_attn(x, ctx, merging)
            if block.merger is not None:
                y, _ = block.merger(y, metric, ctx)
            scores = gate.score(y[:, ctx.num_prefix:]).flatten()
            gate.score.bias -= torch.quantile(scores, 1 - rate)
        x, ctx = block(x, ctx)
