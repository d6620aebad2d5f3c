"""Bad dataset folders, split files and label maps for VTAB1k and EmbeddedSegDataset:
refused when the dataset is built (or a sample prepared), naming the file and the fix,
instead of a hang, a crash mid-training or silently wrong training."""
from pathlib import Path

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image

from projects.core.datasets.embedded_seg import CLASSES, EmbeddedSegDataset, bad_labels
from projects.core.datasets.vtab1k import VTAB1k

SEG_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')]


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _seg_root(tmp_path: Path, labels=(0, 5)) -> Path:
    """img_dir/train + ann_dir/train with one 16x16 image per entry of ``labels``."""
    for i, label in enumerate(labels):
        _png(tmp_path / 'img_dir' / 'train' / f's{i}.png', np.zeros((16, 16, 3), np.uint8))
        ann = np.full((16, 16), label, np.uint8)
        ann[:4] = 255  # ignored pixels are fine
        _png(tmp_path / 'ann_dir' / 'train' / f's{i}.png', ann)
    return tmp_path


def _seg(root: Path, **kw) -> EmbeddedSegDataset:
    with DefaultScope.overwrite_default_scope('mmseg'):
        return EmbeddedSegDataset(
            data_root=str(root), pipeline=SEG_PIPELINE,
            data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'), **kw)


# ------------------------------------------------------------------------ VTAB-1k
def test_vtab1k_list_naming_missing_images_is_refused(tmp_path):
    _png(tmp_path / 'images' / 'a.png', np.zeros((8, 8), np.uint8))
    (tmp_path / 'val200.txt').write_text('images/a.png 1\nimages/b.png 2\n\nimages/c.png 0\n')
    with pytest.raises(FileNotFoundError, match=r'val200\.txt names 2 image\(s\) that do not '
                       r'exist: line 2: .*images/b\.png; line 4: .*images/c\.png\. Check '
                       r'data_root .*rebuild the task folder, or remove those lines'):
        VTAB1k(task='fashion_mnist', split='val', data_root=str(tmp_path))


# ------------------------------------------------------------ embedded segmentation
def test_seg_missing_image_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'image folder .*img_dir/train does not '
                       r'exist\. Build the set with `python tools/data/make_embedded_seg\.py`'):
        _seg(tmp_path)


def test_seg_empty_folder_or_split_file_is_refused(tmp_path):
    """An empty set would make mmengine's InfiniteSampler (iteration-based seg
    configs) loop forever without yielding a batch."""
    (tmp_path / 'img_dir' / 'train').mkdir(parents=True)
    with pytest.raises(ValueError, match=r'img_dir/train gives no \.png image, so there is '
                       r'nothing to train or test on\. Build the set'):
        _seg(tmp_path)
    _seg_root(tmp_path)
    (tmp_path / 'empty.txt').write_text('')
    with pytest.raises(ValueError, match=r'empty\.txt gives no \.png image'):
        _seg(tmp_path, ann_file='empty.txt')
    with pytest.raises(FileNotFoundError, match=r'split file .*nosuch\.txt does not exist'):
        _seg(tmp_path, ann_file='nosuch.txt')


def test_seg_split_file_naming_missing_files_is_refused(tmp_path):
    _seg_root(tmp_path)
    (tmp_path / 'split.txt').write_text('s0\ns7\n')
    with pytest.raises(FileNotFoundError, match=r'2 file\(s\) listed by .*split\.txt do not '
                       r'exist: .*img_dir/train/s7\.png, .*ann_dir/train/s7\.png\. Remove them'):
        _seg(tmp_path, ann_file='split.txt')
    (tmp_path / 'ann_dir' / 'train' / 's1.png').unlink()  # an image without its label map
    with pytest.raises(FileNotFoundError, match=r'1 file\(s\) listed by .*img_dir/train do not '
                       r'exist: .*ann_dir/train/s1\.png'):
        _seg(tmp_path)


@pytest.mark.parametrize('label', [len(CLASSES), 30])
def test_seg_labels_outside_the_classes_are_refused(tmp_path, label):
    """Without the check a training step fails on CPU with "Target 30 is out of
    bounds" (FCN / UPerNet cross-entropy) or "index 30 is out of bounds" (FASeg's
    matcher), and FASeg silently trains label == num_classes (23) as "no object"."""
    ds = _seg(_seg_root(tmp_path, labels=(0, label)))
    sample = ds[0]  # labels 0 and 255 only
    assert set(np.unique(sample['data_samples'].gt_sem_seg.data).tolist()) == {0, 255}
    with pytest.raises(ValueError, match=rf'label map .*ann_dir/train/s1\.png has labels '
                       rf'\[{label}\] that are neither a class \(0\.\.22\) nor the ignore index '
                       r'255\. Fix the map .*num_classes of the decode head'):
        ds.prepare_data(1)


def test_bad_labels_helper():
    seg = np.array([[0, 22, 255], [23, 254, -1]])
    assert bad_labels(seg, 23) == [-1, 23, 254]
    assert bad_labels(np.array([[0, 22, 255]]), 23) == []
    assert bad_labels(np.array([[0, 22]]), 23) == []
