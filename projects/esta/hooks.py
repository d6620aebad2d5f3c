"""The hooks of ESTA training.

* :class:`StitchInitHook` -- least-squares init of the stitching layers from one batch
  of training images before training (SN-Net); skipped when the loaded weights are
  already initialised (``--resume``, ``load_from`` of a trained model).
* :class:`ESTASamplingHook` -- one stitch per iteration (uniform during warm-up, then
  interval + softmax of the importance scores), the moving average of the sampled
  stitch's SNIP importance ``Q = sum |theta * dL/dtheta|`` over the backbone's
  trainable parameters it used, and the deployment list after training
  (``esta_deploy.json``: per FLOPs interval the top-scored stitch, ``select='score'``,
  thesis; or the most accurate on the validation loader, ``select='val'``, ours). Q
  comes from the classifier's ``train_step`` (``outputs['esta_q']``: the stitch's own
  loss, the teacher's backward kept apart); a model that does not report it (a
  segmentor: one loss, the stitch's) is read from its gradients as they accumulate.
  Its sampler state (scores, counts, generator) is stored in every checkpoint.
* :class:`AnchorHeadsProbeHook` -- LP-FT for a head per anchor: the heads of the
  smaller anchors get the linear probe of their own anchor's features, with the
  settings of the config's ``LinearProbeInitHook`` (which fits the largest anchor's).
"""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..core.engine.atomic_io import atomic_write_text
from ..core.engine.ddp import unwrap_model
from ..core.engine.hooks.linear_probe_init_hook import (LinearProbeInitHook, probe_head,
                                                        split_loader)
from .backbone import StitchedViT
from .classifier import Q_KEY, snip_term
from .sampler import StitchSampler, broadcast_int, mean_over_ranks

CKPT_KEY = 'esta_sampler'
DEPLOY_FILE = 'esta_deploy.json'
SELECT = ('score', 'val')


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
        bias_correction: the bias-corrected moving average (ours; False: a stitch's
            first Q sets its score). See :mod:`projects.esta.sampler`.
        normalise: 'running_mean' (ours: Q over the running mean of every iteration's
            Q) or None (raw Q).
        level_momentum: momentum of that running mean.
        select: how a FLOPs interval's deployed stitch is chosen when training ends:
            'score' (the top importance score, thesis) or 'val' (the top accuracy on
            the first ``val_images`` images of ``val_split``, ours).
        val_images: the cap of ``select='val'``.
        val_split: the split of the config's test dataloader (test pipeline, no
            shuffling, as LP-FT reads it) that ``select='val'`` scores on; None: the
            runner's val dataloader (sharded under DDP).
    """

    priority = 'NORMAL'

    def __init__(self, num_intervals: int = 15, momentum: float = 0.9,
                 warmup_ratio: float = 0.1, temperature: float = 1.0, seed: int = 0,
                 eval_stitch: Optional[int] = None, bias_correction: bool = True,
                 normalise: Optional[str] = 'running_mean', level_momentum: float = 0.9,
                 select: str = 'score', val_images: int = 200,
                 val_split: Optional[str] = 'val') -> None:
        if select not in SELECT:
            raise ValueError(f"select must be 'score' (top importance per FLOPs interval, "
                             f"thesis) or 'val' (top val accuracy, ours), got {select!r}.")
        if val_images < 1:
            raise ValueError(f'val_images must be >= 1, got {val_images}.')
        self.num_intervals = num_intervals
        self.momentum = momentum
        self.warmup_ratio = warmup_ratio
        self.temperature = temperature
        self.seed = seed
        self.eval_stitch = eval_stitch
        self.bias_correction = bias_correction
        self.normalise = normalise
        self.level_momentum = level_momentum
        self.select = select
        self.val_images = val_images
        self.val_split = val_split
        self.sampler: Optional[StitchSampler] = None
        self.val_accuracy: Optional[List[float]] = None
        self._pending = None
        self._handles: List = []
        self._q = 0.0
        self._from_outputs = False
        self.current = None

    # ------------------------------------------------------------------ set-up
    def build_sampler(self, backbone: StitchedViT) -> StitchSampler:
        flops = [backbone.stitch_macs(s) for s in range(backbone.num_stitches)]
        return StitchSampler(flops, self.num_intervals, self.momentum, self.temperature,
                             self.seed, self.bias_correction, self.normalise,
                             self.level_momentum)

    def _accumulate(self, param: torch.Tensor) -> None:
        if param.grad is not None:
            self._q += snip_term(param, param.grad)

    def attach(self, backbone: StitchedViT) -> None:
        """For a model that does not report Q (one loss, the stitch's): read the SNIP
        term of every trainable backbone parameter as its gradient is accumulated
        (parameters a stitch does not use get no gradient)."""
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
        model = unwrap_model(runner.model)
        self._from_outputs = bool(getattr(model, 'reports_stitch_importance', False))
        if not self._from_outputs:
            self.attach(backbone)
        _check_head_probes(runner, model)
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
        if self._from_outputs:
            if not isinstance(outputs, dict) or Q_KEY not in outputs:
                raise RuntimeError(
                    f"ESTASamplingHook: train_step's outputs have no '{Q_KEY}' (the "
                    "sampled stitch's SNIP score, StitchedImageClassifier.train_step). "
                    'Under DDP set model_wrapper_cfg=dict(type='
                    "'ESTADistributedDataParallel'): mmengine's DDP wrapper runs its own "
                    'train_step.')
            local = float(outputs[Q_KEY])
        else:
            local = self._q
        q = mean_over_ranks(local)
        self.sampler.update(self.current, q)
        runner.message_hub.update_scalar('train/esta_stitch', self.current)
        runner.message_hub.update_scalar('train/esta_importance', q)

    def after_train(self, runner) -> None:
        self.detach()
        backbone = stitched_backbone(runner.model)
        how = 'top score'
        if self.select == 'val':
            sharded = self.val_split is None
            loader = runner.val_dataloader if sharded else split_loader(runner.cfg,
                                                                        self.val_split)
            self.val_accuracy = stitch_accuracies(
                unwrap_model(runner.model), loader, range(backbone.num_stitches),
                self.val_images, sharded)
            how = f'top accuracy on {self.val_images} {self.val_split or "val"} images'
        deploy = self.deployment()
        if is_main_process():
            text = json.dumps(dict(deploy=deploy, select=self.select,
                                   scores=self.sampler.scores.tolist(),
                                   counts=self.sampler.counts.tolist(),
                                   flops=self.sampler.flops.tolist(),
                                   val_accuracy=self.val_accuracy), indent=1)
            atomic_write_text(osp.join(runner.work_dir, DEPLOY_FILE), text)
        best = [d['stitch'] for d in deploy]
        print_log(f'ESTA: deploy stitches {best} ({how} per FLOPs interval), written '
                  f'to {DEPLOY_FILE}', 'current')
        backbone.set_stitch(self._eval_stitch(backbone))

    def deployment(self) -> List[Dict]:
        """The deployed stitch per FLOPs interval, by ``select`` (with 'val' each entry
        has its ``val_accuracy``)."""
        if self.select == 'score':
            return self.sampler.best_per_interval()
        if self.val_accuracy is None:
            raise RuntimeError("select='val': the stitches' val accuracies are measured "
                               'when training ends (after_train); none yet.')
        deploy = self.sampler.best_per_interval(by=self.val_accuracy)
        for entry in deploy:
            entry['val_accuracy'] = entry.pop('value')
        return deploy

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


@torch.no_grad()
def stitch_accuracies(model, loader, stitches: Sequence[int], max_images: int,
                      sharded: bool = False) -> List[float]:
    """Top-1 accuracy (%) of every stitch (its own head) on the first ``max_images``
    images of ``loader`` (``sharded``, a loader of each rank's shard under DDP:
    ``max_images / world size`` per rank, counts summed over ranks); one entry per
    stitch of the model, NaN if not asked."""
    sharded = sharded and get_world_size() > 1
    per_rank = -(-max_images // get_world_size()) if sharded else max_images
    batches, seen = [], 0
    for data in loader:
        data = model.data_preprocessor(data, False)
        labels = torch.cat([d.gt_label for d in data['data_samples']])
        take = min(len(labels), per_rank - seen)
        batches.append((data['inputs'][:take], labels[:take]))
        seen += take
        if seen >= per_rank:
            break
    was_training = model.training
    model.eval()
    out = [float('nan')] * model.backbone.num_stitches
    for stitch in stitches:
        counts = torch.zeros(2, dtype=torch.float64)
        for inputs, labels in batches:
            pred = model.stitch_logits(inputs, stitch).argmax(-1).cpu()
            counts += torch.tensor([float((pred == labels.cpu()).sum()), float(len(labels))],
                                   dtype=torch.float64)
        if sharded:
            all_reduce(counts, op='sum')
        out[stitch] = 100.0 * float(counts[0]) / max(float(counts[1]), 1.0)
    model.train(was_training)
    return out


def _check_head_probes(runner, model) -> None:
    """A head per anchor with the recipe's LP-FT needs the ESTA probe of the other
    heads, else they start random while the largest anchor's starts converged."""
    if not getattr(model, 'head_per_anchor', False):
        return
    types = [type(h) for h in runner.hooks]
    if LinearProbeInitHook in types and AnchorHeadsProbeHook not in types:
        raise ValueError(
            'LinearProbeInitHook fits only model.head (the largest anchor\'s) but this '
            'model has a head per anchor; add dict(type=\'AnchorHeadsProbeHook\') to '
            'custom_hooks to fit every anchor\'s head on its own features.')


@HOOKS.register_module()
class AnchorHeadsProbeHook(Hook):
    """Before training, set every smaller anchor's head (``model.anchor_heads``) to
    the converged linear probe of that anchor's own initial features -- the LP-FT of
    the config's ``LinearProbeInitHook`` (same splits, L2 grid and criterion, so
    ``apply_protocol`` and the main job's overrides hold for both), which fits
    ``model.head`` on the largest anchor. Runs after it; skipped on resume."""

    priority = 'LOWEST'  # after LinearProbeInitHook (VERY_LOW)

    def __init__(self) -> None:
        self.fitted: Dict[int, Dict[str, object]] = {}

    def before_train(self, runner) -> None:
        if runner.iter > 0:
            return
        lpft = next((h for h in runner.hooks if isinstance(h, LinearProbeInitHook)), None)
        if lpft is None:
            raise ValueError('AnchorHeadsProbeHook takes its settings from the config\'s '
                             'LinearProbeInitHook (the largest anchor\'s head); add '
                             'dict(type=\'LinearProbeInitHook\') to custom_hooks or drop '
                             'this hook.')
        model = unwrap_model(runner.model)
        if not getattr(model, 'head_per_anchor', False):
            raise ValueError('AnchorHeadsProbeHook needs a StitchedImageClassifier with '
                             'head_per_anchor=True (and the backbone\'s '
                             "tap_width='anchor'); drop the hook for one shared head.")
        backbone = stitched_backbone(model)
        current = backbone.stitch
        for anchor, head in enumerate(model.anchor_heads):
            backbone.set_stitch(anchor)  # the anchor alone is stitch ``anchor``
            fitted = probe_head(model, runner.cfg, lpft.select_splits, lpft.fit_splits,
                                lpft.progress, {}, lpft.l2_grid, lpft.select_by)
            fc = getattr(head, 'fc', None)
            if not isinstance(fc, torch.nn.Linear):
                raise TypeError(f'AnchorHeadsProbeHook: anchor {anchor}\'s head has no '
                                'linear layer `fc` (use a LinearClsHead).')
            with torch.no_grad():
                fc.weight.copy_(fitted['weight'])
                fc.bias.copy_(fitted['bias'])
            self.fitted[anchor] = fitted
            runner.logger.info(f'LP-FT: head of anchor {anchor} set to the linear probe of '
                               f'its own features (l2={fitted["l2"]})')
        backbone.set_stitch(current)

