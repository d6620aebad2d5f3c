"""What every analysis tool loads: the config (with ``--cfg-options``), the model in
the config's registry scope with the weights asked for, and its input images.

Weights: speed and multiply-adds do not depend on them, so a benchmark without a
checkpoint builds the model with random weights (the config's ``init_cfg`` dropped:
no pretrained file is needed). ``'init'`` keeps the config's own initialisation
(pretrained backbone, fresh method parts), a path loads a trained checkpoint.

Images: by default the first images of the config's test split through its own
pipeline and data preprocessor, resized to the timed input size. A batch of one image
repeated would give every image the same token count after merging or dispatching, so
it is only available on request (``'repeat'``); ``'random'`` is normal noise, for
models without a dataset (an architecture file).
"""
import contextlib
import copy
import logging
import os.path as osp
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import Tensor, nn

from ..engine.model_builder import SCOPE_TASKS, build_model_from_cfg

IMAGE_MODES = ('real', 'repeat', 'random')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """The config at ``path`` with ``cfg_options`` (a ``DictAction`` dict) merged."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def drop_init_cfg(cfg: Config) -> Config:
    """A copy of ``cfg`` whose backbone (and stitched anchors) have no ``init_cfg``:
    random weights, no checkpoint file needed."""
    cfg = copy.deepcopy(cfg)
    backbone = cfg.model.get('backbone')
    if backbone is not None:
        backbone.pop('init_cfg', None)
        for anchor in backbone.get('anchors', None) or []:
            anchor.pop('init_cfg', None)
    return cfg


@contextlib.contextmanager
def quiet_init() -> Iterator[None]:
    """mmengine logs every parameter's initialiser at INFO (hundreds of lines for a
    ViT); a measuring tool shows warnings only."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def init_weights(model: nn.Module) -> nn.Module:
    """``model.init_weights()`` without the per-parameter log."""
    with quiet_init():
        model.init_weights()
    return model


def build_model(cfg: Config, weights: Optional[str] = None,
                scopes: Sequence[str] = tuple(SCOPE_TASKS), strict: bool = True) -> nn.Module:
    """``cfg.model`` in eval mode. ``weights``: None = random (init_cfg dropped),
    ``'init'`` = the config's initialisation, else a checkpoint path."""
    if weights is None:
        return build_model_from_cfg(drop_init_cfg(cfg), scopes).eval()
    if weights == 'init':
        return init_weights(build_model_from_cfg(cfg, scopes)).eval()
    model = build_model_from_cfg(drop_init_cfg(cfg), scopes)
    load_weights(model, weights, strict)
    return model.eval()


def load_weights(model: nn.Module, path: str, strict: bool = True) -> dict:
    """Load a checkpoint (mmengine's ``state_dict`` layout or a bare state dict) and
    return the checkpoint dict (its ``meta`` carries e.g. ``dataset_meta``)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    from mmengine.runner import load_checkpoint
    return load_checkpoint(model, path, map_location='cpu', strict=strict)


def image_hw(size) -> Tuple[int, int]:
    """(H, W) from an int, a 1-tuple or a 2-tuple."""
    if isinstance(size, int):
        return size, size
    size = tuple(size)
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def _dataset(cfg: Config, split: str):
    from mmengine.registry import DATASETS, init_default_scope
    loader = cfg.get(f'{split}_dataloader')
    if not loader:
        raise ValueError(f'{cfg.filename}: no {split}_dataloader to take real images from; '
                         "pass --images random (or 'repeat') or use a config with one.")
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return DATASETS.build(copy.deepcopy(loader.dataset))


def dataset_samples(cfg: Config, num: int, split: str = 'test',
                    cycle: bool = True) -> List[dict]:
    """The first ``num`` samples of the config's ``split`` dataset through its pipeline
    (as the data loader without shuffling yields them); a smaller split is cycled, or
    with ``cycle=False`` given whole."""
    dataset = _dataset(cfg, split)
    if len(dataset) == 0:
        raise ValueError(f'{cfg.filename}: the {split} split is empty.')
    count = num if cycle else min(num, len(dataset))
    return [dataset[i % len(dataset)] for i in range(count)]


def collate(samples: Sequence[dict]) -> dict:
    from mmengine.dataset import pseudo_collate
    return pseudo_collate(list(samples))


@torch.no_grad()
def preprocess(model: nn.Module, samples: Iterable[dict],
               hw: Optional[Tuple[int, int]] = None) -> Tensor:
    """Samples -> the normalised (B, 3, H, W) batch the model's data preprocessor makes,
    one image at a time (images of a segmentation split differ in size), each resized
    bilinearly to ``hw`` when given and different."""
    out = []
    for sample in samples:
        x = model.data_preprocessor(collate([sample]), False)['inputs']
        if hw is not None and tuple(x.shape[-2:]) != tuple(hw):
            x = F.interpolate(x, size=tuple(hw), mode='bilinear', align_corners=False)
        out.append(x)
    return torch.cat(out)


def input_images(cfg: Optional[Config], model: Optional[nn.Module], num: int,
                 hw: Tuple[int, int], mode: str = 'real', seed: int = 0) -> Tensor:
    """``num`` input images at ``hw`` (see the module docstring for ``mode``)."""
    if mode not in IMAGE_MODES:
        raise ValueError(f'images {mode!r}: use one of {", ".join(IMAGE_MODES)}.')
    if num < 1:
        raise ValueError(f'need at least one image, got {num}.')
    if mode == 'random':
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(num, 3, *hw, generator=gen)
    if cfg is None or model is None:
        raise ValueError(f"--images {mode} reads the config's test split; this input has "
                         'no config: use --images random.')
    samples = dataset_samples(cfg, 1 if mode == 'repeat' else num)
    images = preprocess(model, samples, hw)
    return images.expand(num, -1, -1, -1).contiguous() if mode == 'repeat' else images


def add_image_arg(parser, default: str = 'real') -> None:
    """``--images``: the one flag every tool that feeds images takes."""
    parser.add_argument('--images', choices=IMAGE_MODES, default=default,
                        help="input batch: 'real' = the first images of the config's test "
                        "split, resized to the input size (default); 'repeat' = the first "
                        "of them repeated (hides per-image token counts); 'random' = "
                        'Gaussian noise (seed 0)')
