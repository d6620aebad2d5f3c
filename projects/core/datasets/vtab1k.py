"""VTAB-1k folders in the NOAH / VPT / SSF list-file layout.

A task folder holds ``train800.txt``, ``val200.txt``, ``train800val200.txt`` and
``test.txt``; every line is ``<image path relative to the task folder> <int label>``,
e.g. ``images/train/00012.png 3``. mmpretrain's ``CustomDataset`` already reads this
format through ``ann_file``; :class:`VTAB1k` only adds the task metadata (number of
classes, class names), a ``split`` shortcut and error messages that name the list
file and line when something is wrong.

The only VTAB-1k-sized task that can be built offline is ``fashion_mnist``
(``tools/data/make_vtab1k_fashion_mnist.py``, committed under
``data/vtab-1k/fashion_mnist``); the 19 real VTAB-1k tasks need the TFDS-based
generator of the original papers.
"""
import os.path as osp
from typing import List, Optional, Sequence, Tuple

from mmengine.fileio import exists, get_text
from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS

# The 19 VTAB-1k tasks (folder names as written by the usual get_vtab1k.py) plus the
# offline stand-in fashion_mnist.
VTAB1K_NUM_CLASSES = {
    # natural
    'cifar': 100,
    'caltech101': 102,
    'dtd': 47,
    'oxford_flowers102': 102,
    'oxford_iiit_pet': 37,
    'svhn': 10,
    'sun397': 397,
    # specialized
    'patch_camelyon': 2,
    'eurosat': 10,
    'resisc45': 45,
    'diabetic_retinopathy': 5,
    # structured
    'clevr_count': 8,
    'clevr_dist': 6,
    'dmlab': 6,
    'kitti': 4,
    'dsprites_loc': 16,
    'dsprites_ori': 16,
    'smallnorb_azi': 18,
    'smallnorb_ele': 9,
    # offline stand-in (Zalando Fashion-MNIST, see data/vtab-1k/fashion_mnist/LICENSE.txt)
    'fashion_mnist': 10,
}

VTAB1K_GROUPS = {
    'natural': ('cifar', 'caltech101', 'dtd', 'oxford_flowers102',
                'oxford_iiit_pet', 'svhn', 'sun397'),
    'specialized': ('patch_camelyon', 'eurosat', 'resisc45', 'diabetic_retinopathy'),
    'structured': ('clevr_count', 'clevr_dist', 'dmlab', 'kitti', 'dsprites_loc',
                   'dsprites_ori', 'smallnorb_azi', 'smallnorb_ele'),
}

# Names other code bases use for the same folders (PYRA/NOAH scripts, SSF keys).
VTAB1K_ALIASES = {
    'cifar100': 'cifar',
    'oxford_pet': 'oxford_iiit_pet',
    'pets': 'oxford_iiit_pet',
    'flowers102': 'oxford_flowers102',
    'camelyon': 'patch_camelyon',
    'retinopathy': 'diabetic_retinopathy',
}

FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                         'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')

# Class names where they are known; other tasks get 'class_<i>'.
VTAB1K_CLASSES = {'fashion_mnist': FASHION_MNIST_CLASSES}

VTAB1K_SPLITS = {
    'train': 'train800.txt',
    'val': 'val200.txt',
    'trainval': 'train800val200.txt',
    'test': 'test.txt',
}


def resolve_task(task: str) -> str:
    """Canonical VTAB-1k folder name of ``task`` (aliases accepted)."""
    name = VTAB1K_ALIASES.get(task, task)
    if name not in VTAB1K_NUM_CLASSES:
        raise KeyError(f'unknown VTAB-1k task {task!r}; known tasks: '
                       f'{", ".join(sorted(VTAB1K_NUM_CLASSES))} '
                       f'(aliases: {", ".join(sorted(VTAB1K_ALIASES))})')
    return name


def vtab1k_classes(task: str) -> Tuple[str, ...]:
    name = resolve_task(task)
    if name in VTAB1K_CLASSES:
        return VTAB1K_CLASSES[name]
    return tuple(f'class_{i}' for i in range(VTAB1K_NUM_CLASSES[name]))


@DATASETS.register_module()
class VTAB1k(CustomDataset):
    """One VTAB-1k task read from its list files.

    Args:
        task (str): Task folder name, e.g. ``'fashion_mnist'`` or ``'cifar'``
            (aliases such as ``'cifar100'`` are accepted).
        split (str, optional): ``'train'`` (train800), ``'val'`` (val200),
            ``'trainval'`` (train800val200) or ``'test'``. Ignored when
            ``ann_file`` is given; one of the two is required.
        data_root (str, optional): Task folder. Defaults to
            ``data/vtab-1k/<task>``.
        ann_file (str): List file, relative to ``data_root`` unless absolute.
        metainfo (dict, optional): May override ``classes``; their number
            must match the task.
        **kwargs: Passed to :class:`mmpretrain.datasets.CustomDataset`.
    """

    def __init__(self,
                 task: str,
                 split: Optional[str] = None,
                 data_root: Optional[str] = None,
                 ann_file: str = '',
                 data_prefix: str = '',
                 metainfo: Optional[dict] = None,
                 extensions: Sequence[str] = ('.jpg', '.jpeg', '.png'),
                 **kwargs):
        self.task = resolve_task(task)
        self.num_classes = VTAB1K_NUM_CLASSES[self.task]
        if not ann_file:
            if split not in VTAB1K_SPLITS:
                raise ValueError(f'VTAB1k({self.task!r}): give ann_file or split, one of '
                                 f'{sorted(VTAB1K_SPLITS)} (got split={split!r})')
            ann_file = VTAB1K_SPLITS[split]
        self.split = split
        if data_root is None:
            data_root = osp.join('data', 'vtab-1k', self.task)

        metainfo = dict(metainfo or {})
        classes = metainfo.get('classes', None)
        if classes is None and kwargs.get('classes') is None:
            metainfo['classes'] = vtab1k_classes(self.task)
        elif classes is not None and not isinstance(classes, str) \
                and len(classes) != self.num_classes:
            raise ValueError(f'VTAB1k({self.task!r}) has {self.num_classes} classes '
                             f'but metainfo gives {len(classes)}')
        super().__init__(
            data_root=data_root,
            data_prefix=data_prefix,
            ann_file=ann_file,
            with_label=True,
            extensions=extensions,
            metainfo=metainfo,
            **kwargs)

    def load_data_list(self):
        """Parse ``<relpath> <label>`` lines; errors name the file and line."""
        if not exists(self.ann_file):
            hint = (' -- build it with tools/data/make_vtab1k_fashion_mnist.py'
                    if self.task == 'fashion_mnist' else '')
            raise FileNotFoundError(
                f'VTAB-1k list file not found: {self.ann_file} '
                f'(task {self.task!r}, data_root {self.data_root!r}){hint}')
        data_list, linenos = [], []
        for lineno, raw in enumerate(get_text(self.ann_file).splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            fields = line.rsplit(maxsplit=1)
            where = f'{self.ann_file}, line {lineno}'
            if len(fields) != 2:
                raise ValueError(f'{where}: expected "<relative image path> <label>", '
                                 f'got {raw!r}')
            relpath, label_text = fields
            try:
                label = int(label_text)
            except ValueError:
                raise ValueError(f'{where}: label {label_text!r} is not an integer '
                                 f'(line {raw!r})') from None
            if not 0 <= label < self.num_classes:
                raise ValueError(f'{where}: label {label} is outside [0, '
                                 f'{self.num_classes}) for task {self.task!r}')
            if not self.is_valid_file(relpath):
                raise ValueError(f'{where}: {relpath!r} does not end with one of '
                                 f'{sorted(self.extensions)}')
            data_list.append(dict(img_path=osp.join(self.img_prefix, relpath),
                                  gt_label=label))
            linenos.append(lineno)
        if not data_list:
            raise ValueError(f'VTAB-1k list file {self.ann_file} has no samples')
        self._check_images_exist([d['img_path'] for d in data_list], linenos)
        return data_list

    def _check_images_exist(self, paths: List[str], linenos: List[int]) -> None:
        """Refuse a list that names missing images now, not mid-epoch (local paths
        only: one stat per image, milliseconds for a VTAB-1k split)."""
        missing = [(n, p) for n, p in zip(linenos, paths)
                   if '://' not in p and not osp.isfile(p)]
        if missing:
            shown = '; '.join(f'line {n}: {p}' for n, p in missing[:5])
            more = f' (+{len(missing) - 5} more)' if len(missing) > 5 else ''
            raise FileNotFoundError(
                f'VTAB-1k list file {self.ann_file} names {len(missing)} image(s) that do '
                f'not exist: {shown}{more}. Check data_root {self.data_root!r} and '
                'data_prefix, rebuild the task folder, or remove those lines.')

    def extra_repr(self):
        return [f'Task: \t{self.task}', f'Split: \t{self.split}',
                f'Annotation file: \t{self.ann_file}']
