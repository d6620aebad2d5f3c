"""ESTA's classification objective (thesis §3.4.2): every iteration trains the sampled
stitch and the largest anchor; the anchor's cross-entropy trains it as usual, and the
stitch learns from the labels and, by in-place hard-label distillation, from the
anchor's predicted class (DeiT's hard distillation, ``distill_weight`` 0.5 each).
When the sampled stitch is the largest anchor, one forward only.

Two things are ESTA's own here:

* **The importance score of the sampled stitch comes from its own loss.**
  :meth:`StitchedImageClassifier.train_step` backwards the stitch's loss first, reads
  SNIP ``Q = sum |theta * dL_stitch/dtheta|`` over the backbone's trainable parameters
  (those the stitch does not run have no gradient), then backwards the teacher's loss
  and steps. The two graphs are disjoint (the distillation target is taken without
  gradient), so the split costs nothing; Q is returned as ``log_vars['esta_q']`` for
  :class:`~projects.esta.hooks.ESTASamplingHook`.
* **A head per anchor** (``head_per_anchor=True``, SN-Net): a stitch is read by the
  head of the anchor it ends in, built from the head config with that anchor's width
  (the backbone must keep each anchor's width: ``tap_width='anchor'``).

Distributed: mmengine's DDP wrapper runs its own one-backward ``train_step``; use
:class:`ESTADistributedDataParallel` (``model_wrapper_cfg``), which runs this one and
all-reduces the gradients once before the step.
"""
import copy
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper
from mmengine.registry import MODEL_WRAPPERS
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from ..core.engine.distill import HardDistillMixin

TEACHER_SUFFIX = '_teacher'
#: the log_vars key of the sampled stitch's SNIP score
Q_KEY = 'esta_q'


def snip_term(param: Tensor, grad: Tensor) -> float:
    """One parameter's SNIP term ``sum |theta * grad|`` (float64 sum)."""
    with torch.no_grad():
        return float((param.detach() * grad.detach()).abs().sum(dtype=torch.float64))


def snip(params: List[nn.Parameter], before: List[Optional[Tensor]]) -> float:
    """``sum |theta * (grad - before)|`` over ``params`` (``before``: the gradients held
    before the backward, None when there were none)."""
    return sum(snip_term(p, p.grad if old is None else p.grad - old)
               for p, old in zip(params, before) if p.grad is not None)


@MODELS.register_module()
class StitchedImageClassifier(HardDistillMixin, ImageClassifier):
    """Args (besides ImageClassifier's):
        distill: in-place distillation from the largest anchor.
        distill_weight: the distillation share of the stitch's loss.
        head_per_anchor: one head per anchor (``head`` with ``in_channels`` = that
            anchor's width), a stitch uses its end anchor's; ``self.head`` is the
            largest anchor's, ``self.anchor_heads[a]`` anchor ``a``'s.
    """

    #: ESTASamplingHook reads Q from ``train_step``'s outputs instead of parameter hooks
    reports_stitch_importance = True

    def __init__(self, backbone: dict, neck: Optional[dict] = None,
                 head: Optional[dict] = None, *args, distill: bool = True,
                 distill_weight: float = 0.5, head_per_anchor: bool = False,
                 **kwargs) -> None:
        super().__init__(backbone, neck, head, *args, **kwargs)
        if not 0 <= distill_weight <= 1:
            raise ValueError(f'distill_weight must be in [0, 1], got {distill_weight}.')
        self.distill = distill
        self.distill_weight = distill_weight
        self.head_per_anchor = head_per_anchor
        self.anchor_heads = nn.ModuleList()
        width = getattr(self.backbone, 'tap_width', 'largest')
        if head_per_anchor != (width == 'anchor'):
            raise ValueError(
                f'head_per_anchor={head_per_anchor} needs the backbone to keep each '
                f"anchor's width (tap_width='anchor'), and tap_width='anchor' needs a head "
                f"per anchor; got tap_width={width!r}. Set both (SN-Net: head per anchor) or "
                "neither (one head, taps projected: tap_width='largest').")
        if head_per_anchor:
            dims = self.backbone.dims
            cfg = copy.deepcopy(head)
            if cfg is None or cfg.get('in_channels') != dims[-1]:
                raise ValueError(f"head.in_channels must be the largest anchor's width "
                                 f'{dims[-1]} (the other heads get their anchor\'s width '
                                 f'{dims[:-1]}), got {(cfg or {}).get("in_channels")}.')
            self.anchor_heads.extend(MODELS.build(dict(cfg, in_channels=d)) for d in dims[:-1])

    # ------------------------------------------------------------------ heads
    def head_of(self, stitch: Optional[int] = None) -> nn.Module:
        """The head reading ``stitch`` (default: the backbone's current one)."""
        end = self.backbone.end_anchor(stitch)
        if not self.head_per_anchor or end == len(self.backbone.dims) - 1:
            return self.head
        return self.anchor_heads[end]

    def extract_stitch_feat(self, inputs: Tensor, stitch: int):
        """What the head reads for ``stitch`` (backbone path + neck)."""
        feats = self.backbone(inputs, stitch=stitch)
        return self.neck(feats) if self.with_neck else feats

    def stitch_logits(self, inputs: Tensor, stitch: int) -> Tensor:
        """Logits of ``stitch`` through its own head."""
        return self.head_of(stitch)(self.extract_stitch_feat(inputs, stitch))

    def forward(self, inputs: Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'tensor':
            return self.stitch_logits(inputs, self.backbone.stitch)
        return super().forward(inputs, data_samples, mode)

    def predict(self, inputs: Tensor, data_samples=None, **kwargs):
        feats = self.extract_feat(inputs)
        return self.head_of().predict(feats, data_samples, **kwargs)

    # ------------------------------------------------------------------ losses
    def loss(self, inputs: Tensor, data_samples: List) -> dict:
        """The stitch's losses, and the teacher's (keys ending in ``_teacher``)."""
        stitch, teacher = self.backbone.stitch, self.backbone.teacher_stitch
        feats = self.extract_stitch_feat(inputs, stitch)
        head = self.head_of(stitch)
        if not self.distill or stitch == teacher:
            return head.loss(feats, data_samples)
        teacher_feats = self.extract_stitch_feat(inputs, teacher)
        losses = {f'{k}{TEACHER_SUFFIX}': v
                  for k, v in self.head.loss(teacher_feats, data_samples).items()}
        with torch.no_grad():
            teacher_logits = self.head(teacher_feats)
        losses.update(self.hard_distill(head.loss(feats, data_samples), head(feats),
                                        teacher_logits, self.distill_weight))
        return losses

    def split_losses(self, losses: Dict[str, Tensor]
                     ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        """(the stitch's losses, the teacher's)."""
        teacher = {k: v for k, v in losses.items() if k.endswith(TEACHER_SUFFIX)}
        return {k: v for k, v in losses.items() if k not in teacher}, teacher

    # ---------------------------------------------------------------- training
    def train_step(self, data, optim_wrapper: OptimWrapper,
                   grad_sync: Optional[Callable[[], None]] = None) -> Dict[str, Tensor]:
        """mmengine's step (AMP context, gradient accumulation, one optimizer step per
        ``accumulative_counts``) with two backward passes: the stitch's loss, whose
        SNIP score is read in between, then the teacher's. ``grad_sync``: called before
        the optimizer step (the DDP wrapper's all-reduce)."""
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode='loss')
        own, teacher = self.split_losses(losses)
        own_loss, log_vars = self.parse_losses(own)
        params = [p for p in self.backbone.parameters() if p.requires_grad]
        # under gradient accumulation the grads already hold earlier iterations'
        before = [None if p.grad is None else p.grad.detach().clone() for p in params]
        factor = _grad_factor(optim_wrapper)  # before the backward that counts the step
        _backward(optim_wrapper, own_loss, last=not teacher)
        q = snip(params, before) * factor
        if teacher:
            teacher_loss, teacher_vars = self.parse_losses(teacher)
            _backward(optim_wrapper, teacher_loss, last=True)
            log_vars.update((k, v) for k, v in teacher_vars.items() if k != 'loss')
            log_vars['loss'] = own_loss.detach() + teacher_loss.detach()
        else:
            log_vars['loss'] = own_loss.detach()
        log_vars[Q_KEY] = torch.tensor(q, dtype=torch.float64)
        if optim_wrapper.should_update():
            if grad_sync is not None:
                grad_sync()
            optim_wrapper.step()
            optim_wrapper.zero_grad()
        return log_vars


def _backward(optim_wrapper: OptimWrapper, loss: Tensor, last: bool) -> None:
    """Backward of the accumulation-scaled ``loss``; only the iteration's ``last``
    backward goes through ``optim_wrapper.backward`` (it counts the iteration)."""
    loss = optim_wrapper.scale_loss(loss)
    if last:
        optim_wrapper.backward(loss)
        return
    scaler = getattr(optim_wrapper, 'loss_scaler', None)  # AmpOptimWrapper
    (scaler.scale(loss) if scaler is not None else loss).backward()


def _grad_factor(optim_wrapper: OptimWrapper) -> float:
    """What turns the backward's gradients back into the loss's own: undo the
    accumulation scaling and the AMP loss scale."""
    factor = 1.0 / float(optim_wrapper.scale_loss(torch.ones(())))
    scaler = getattr(optim_wrapper, 'loss_scaler', None)
    if scaler is not None:
        factor /= float(scaler.get_scale())
    return factor


@MODEL_WRAPPERS.register_module()
class ESTADistributedDataParallel(MMDistributedDataParallel):
    """DDP for ESTA's two-backward step: the module's ``train_step`` runs without DDP's
    reducer (a reducer expects one backward per forward), and the trainable
    parameters' gradients are averaged over ranks once before the optimizer step.
    Every rank runs the same stitch (the sampling hook broadcasts it), so the ranks
    hold gradients for the same parameters. Buffers are not broadcast per forward (the
    stitched ViT's only buffer is ``stitch_initialised``)."""

    def train_step(self, data, optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
        return self.module.train_step(data, optim_wrapper, grad_sync=self.all_reduce_grads)

    def all_reduce_grads(self) -> None:
        import torch.distributed as dist
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
        grads = [p.grad for p in self.module.parameters()
                 if p.requires_grad and p.grad is not None]
        if not grads:
            return
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            grad.copy_(synced)
