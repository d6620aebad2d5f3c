"""The main job's DyT columns for one trained classifier: what eval runs beside what
training targets, and what the complete model would score.

:func:`dyt_report` returns

* ``eval_mlp_keep_rate``: the share of the patch tokens entering a gated MLP that ran
  it in eval (the deterministic ``g > 0`` mask; all layers pooled, as the rate loss
  counts), and ``eval_mlp_keep_rate_per_layer``;
* ``train_rate_target``: the rate loss's target r (the configured one; an annealing
  hook restores it after training);
* ``train_rate_expected``: the mean of sigma(g) over the same MLP decisions, i.e. the
  rate the training-mode masks (Bernoulli(sigma(g))) would have on these images. Far
  from the eval keep-rate when the logits are not polarised (issue 24);
* with labels (a data loader): ``top1`` (the dynamic model, as evaluated) and
  ``complete_top1`` (every token through every MLP: the ``gated=False`` forward the
  distillation pass trains), in percent.
"""
from typing import Dict, Iterable, List, Union

import torch
from torch import Tensor

from .classifier import complete_feat
from .dispatcher import TokenDispatcher
from .losses import TokenRateLoss


def _mlp_dispatchers(backbone) -> Dict[int, TokenDispatcher]:
    gates = {i: b.mlp_gate for i, b in enumerate(getattr(backbone, 'blocks', ()))
             if isinstance(b.mlp_gate, TokenDispatcher)}
    if not gates:
        raise ValueError(f'dyt_report: {type(backbone).__name__} has no DyTDispatcher '
                         'in an MLP-gate slot (block_cfg=dict(mlp_gate=dict(type='
                         "'DyTDispatcher'))); it reports MLP dispatch only.")
    return gates


def _batches(data: Union[Tensor, Iterable], preprocess) -> Iterable:
    """(images, labels or None) per batch, from a tensor of preprocessed images or an
    mmengine data loader (batches of ``inputs`` / ``data_samples``)."""
    if isinstance(data, Tensor):
        yield data, None
        return
    for batch in data:
        batch = preprocess(batch, False)
        yield batch['inputs'], torch.cat([s.gt_label for s in batch['data_samples']])


@torch.no_grad()
def dyt_report(model, data: Union[Tensor, Iterable]) -> Dict[str, object]:
    """DyT's columns of ``model`` (an mmpretrain classifier with a ComposableViT
    backbone whose MLPs are DyT-dispatched) on ``data``: preprocessed images (B, 3, H,
    W), or a data loader, which adds the accuracies (see the module docstring)."""
    was_training = model.training
    model.eval()
    backbone = model.backbone
    gates = _mlp_dispatchers(backbone)
    logits: Dict[int, List[Tensor]] = {i: [] for i in gates}
    handles = [g.score.register_forward_hook(
        lambda mod, args, out, i=i: logits[i].append(out.flatten())) for i, g in gates.items()]
    kept, seen = {i: 0 for i in gates}, {i: 0 for i in gates}
    correct = correct_complete = total = 0
    try:
        for images, labels in _batches(data, model.data_preprocessor):
            feats, ctx = backbone.forward_with_context(images)
            for i, mask in ctx.masks_by_layer('mlp').items():
                patch = mask[:, ctx.num_prefix:]
                kept[i] += int(patch.sum())
                seen[i] += patch.numel()
            if labels is None:
                continue
            if model.with_neck:
                feats = model.neck(feats)
            total += len(labels)
            correct += int((model.head(feats).argmax(-1) == labels).sum())
            full = model.head(complete_feat(model, images))
            correct_complete += int((full.argmax(-1) == labels).sum())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    scores = torch.cat([torch.cat(v) for v in logits.values()])
    targets = [t.target for t in backbone.aux_losses if isinstance(t, TokenRateLoss)]
    out = dict(eval_mlp_keep_rate=sum(kept.values()) / sum(seen.values()),
               eval_mlp_keep_rate_per_layer=[kept[i] / seen[i] for i in sorted(gates)],
               train_rate_target=targets[0] if targets else float('nan'),
               train_rate_expected=torch.sigmoid(scores).mean().item())
    if total:
        out.update(top1=100.0 * correct / total, complete_top1=100.0 * correct_complete / total)
    return out
