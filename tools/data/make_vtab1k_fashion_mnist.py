#!/usr/bin/env python
"""Build a VTAB-1k-style Fashion-MNIST task from the Debian package's idx files.

Source: Zalando Fashion-MNIST (MIT), installed by ``apt-get install
dataset-fashion-mnist`` into /usr/share/datasets/fashion-mnist/.

Output (``--out``)::

    images/train/00000.png ... 00999.png   1000 images drawn from the 60k train set
    images/test/00000.png ...              --num-test images drawn from the 10k test set
    train800.txt  val200.txt  train800val200.txt  test.txt
    LICENSE.txt

``train800`` is images/train/00000-00799, ``val200`` is 00800-00999 (disjoint by
construction); list lines read ``images/train/00012.png 3``. Images are 28x28
greyscale PNGs (mode L); pipelines load them as 3-channel colour.

The draw uses ``numpy.random.default_rng(seed)``: one permutation of the train set
(first 1000 indices), then one of the test set (first ``num_test``). Running the
script twice with the same arguments gives identical bytes.
"""
import argparse
import gzip
import shutil
import struct
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
           'Sneaker', 'Bag', 'Ankle boot')
NUM_TRAIN, NUM_VAL = 800, 200
FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read a gzipped big-endian idx file (2049 = labels, 2051 = images)."""
    with gzip.open(path, 'rb') as f:
        raw = f.read()
    magic, = struct.unpack('>I', raw[:4])
    if magic != expected_magic:
        raise ValueError(f'{path}: magic {magic}, expected {expected_magic}')
    ndim = magic & 0xFF
    shape = struct.unpack(f'>{ndim}I', raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f'{path}: {data.size} bytes of data for shape {shape}')
    return data.reshape(shape)


def load_split(src: Path, split: str):
    img_name, lbl_name = FILES[split]
    for name in (img_name, lbl_name):
        if not (src / name).is_file():
            sys.exit(f'make_vtab1k_fashion_mnist: error: {src / name} not found; install '
                     f'the Debian package (apt-get install dataset-fashion-mnist) or '
                     f'pass --src DIR with the four *-ubyte.gz files')
    images = read_idx(src / img_name, 2051)
    labels = read_idx(src / lbl_name, 2049)
    if len(images) != len(labels):
        raise ValueError(f'{split}: {len(images)} images but {len(labels)} labels')
    return images, labels


def license_text(args, num_test: int) -> str:
    names = '\n'.join(f'  {i}  {name}' for i, name in enumerate(CLASSES))
    return f"""Fashion-MNIST, VTAB-1k layout
=============================

Source: Fashion-MNIST by Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf,
"Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
Algorithms", arXiv:1708.07747), https://github.com/zalandoresearch/fashion-mnist,
taken from the Debian package dataset-fashion-mnist
(/usr/share/datasets/fashion-mnist/*-ubyte.gz).

Licence: MIT.

  The MIT License (MIT)
  Copyright (c) 2017 Zalando SE, https://tech.zalando.com

  Permission is hereby granted, free of charge, to any person obtaining a copy
  of this software and associated documentation files (the "Software"), to deal
  in the Software without restriction, including without limitation the rights
  to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
  copies of the Software, and to permit persons to whom the Software is
  furnished to do so, subject to the following conditions:

  The above copyright notice and this permission notice shall be included in
  all copies or substantial portions of the Software.

  THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
  IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
  FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
  AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
  LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
  OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
  SOFTWARE.

Contents: 28x28 greyscale PNGs, 10 classes (label = line index below):
{names}

  train800.txt        images/train/00000-00799 ({NUM_TRAIN} from the 60k train set)
  val200.txt          images/train/00800-00999 ({NUM_VAL} more, disjoint from train800)
  train800val200.txt  both of the above (1000)
  test.txt            images/test/* ({num_test} from the 10k test set)

Regenerate (same draw, same pixels and lists; the PNG bytes can only differ
if another zlib compresses them differently):

  apt-get install dataset-fashion-mnist
  python tools/data/make_vtab1k_fashion_mnist.py --seed {args.seed} --num-test {num_test}
"""


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Build the VTAB-1k-style Fashion-MNIST task (train800 / val200 / '
                    'train800val200 / test) from the Debian dataset-fashion-mnist files.')
    parser.add_argument('--src', default='/usr/share/datasets/fashion-mnist',
                        help='folder with the four *-ubyte.gz idx files')
    parser.add_argument('--out', default='data/vtab-1k/fashion_mnist',
                        help='task folder to write (its images/ is replaced)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the draw')
    parser.add_argument('--num-test', type=int, default=2000,
                        help='number of test images drawn from the 10k test set')
    args = parser.parse_args(argv)

    t0 = time.time()
    src = Path(args.src)
    train_images, train_labels = load_split(src, 'train')
    test_images, test_labels = load_split(src, 'test')
    if not 1 <= args.num_test <= len(test_images):
        parser.error(f'--num-test must be in [1, {len(test_images)}]')

    rng = np.random.default_rng(args.seed)
    train_idx = rng.permutation(len(train_images))[:NUM_TRAIN + NUM_VAL]
    test_idx = rng.permutation(len(test_images))[:args.num_test]

    out = Path(args.out)
    if (out / 'images').exists():
        shutil.rmtree(out / 'images')
    for split in ('train', 'test'):
        (out / 'images' / split).mkdir(parents=True)

    def write(split, images, labels, indices):
        lines = []
        for k, idx in enumerate(indices):
            rel = f'images/{split}/{k:05d}.png'
            Image.fromarray(images[idx]).save(out / rel, format='PNG')
            lines.append(f'{rel} {int(labels[idx])}\n')
        return lines

    train_lines = write('train', train_images, train_labels, train_idx)
    test_lines = write('test', test_images, test_labels, test_idx)
    lists = {
        'train800.txt': train_lines[:NUM_TRAIN],
        'val200.txt': train_lines[NUM_TRAIN:],
        'train800val200.txt': train_lines,
        'test.txt': test_lines,
    }
    for name, lines in lists.items():
        (out / name).write_text(''.join(lines))
    (out / 'LICENSE.txt').write_text(license_text(args, args.num_test))

    counts = np.bincount(train_labels[train_idx[:NUM_TRAIN]], minlength=len(CLASSES))
    print(f'make_vtab1k_fashion_mnist: wrote {out} in {time.time() - t0:.1f} s: '
          + ', '.join(f'{k} {len(v)}' for k, v in lists.items())
          + f'; train800 per class {counts.min()}..{counts.max()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
