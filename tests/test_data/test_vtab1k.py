"""The committed Fashion-MNIST VTAB-1k task, its generator and the VTAB1k dataset."""
import filecmp
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from projects.core.datasets import (FASHION_MNIST_CLASSES, VTAB1K_GROUPS,
                                    VTAB1K_NUM_CLASSES, VTAB1k, resolve_task)

ROOT = Path(__file__).resolve().parents[2]
TASK_DIR = ROOT / 'data' / 'vtab-1k' / 'fashion_mnist'
DEB_SRC = Path('/usr/share/datasets/fashion-mnist')
NUM_TEST = 2000  # what the committed folder was built with (the default)


def read_list(name):
    pairs = []
    for line in (TASK_DIR / name).read_text().splitlines():
        path, label = line.split(' ')
        pairs.append((path, int(label)))
    return pairs


def test_list_counts_and_layout():
    train, val = read_list('train800.txt'), read_list('val200.txt')
    trainval, test = read_list('train800val200.txt'), read_list('test.txt')
    assert (len(train), len(val), len(trainval), len(test)) == (800, 200, 1000, NUM_TEST)
    assert trainval == train + val
    assert all(p.startswith('images/train/') for p, _ in trainval)
    assert all(p.startswith('images/test/') for p, _ in test)
    # exactly the listed files are on disk
    assert sorted(p.name for p in (TASK_DIR / 'images/train').iterdir()) == \
        sorted(Path(p).name for p, _ in trainval)
    assert len(list((TASK_DIR / 'images/test').iterdir())) == NUM_TEST


def test_train_val_disjoint_labels_in_range_all_classes():
    train, val = read_list('train800.txt'), read_list('val200.txt')
    assert not {p for p, _ in train} & {p for p, _ in val}
    assert len({p for p, _ in train}) == 800 and len({p for p, _ in val}) == 200
    for name in ('train800val200.txt', 'test.txt'):
        labels = [lbl for _, lbl in read_list(name)]
        assert min(labels) >= 0 and max(labels) < 10, name
    counts = np.bincount([lbl for _, lbl in train], minlength=10)
    assert counts.shape == (10,) and counts.min() > 0, counts


def test_images_are_28px_greyscale():
    for path, _ in read_list('val200.txt')[:20] + read_list('test.txt')[:20]:
        with Image.open(TASK_DIR / path) as im:
            assert im.size == (28, 28) and im.mode in ('L', 'RGB')
            assert np.asarray(im.convert('RGB')).std() > 0


def test_license_names_source_and_classes():
    text = (TASK_DIR / 'LICENSE.txt').read_text()
    for needle in ('Zalando', 'MIT', 'dataset-fashion-mnist',
                   'make_vtab1k_fashion_mnist.py', *FASHION_MNIST_CLASSES):
        assert needle in text, needle


def load_generator():
    path = ROOT / 'tools' / 'data' / 'make_vtab1k_fashion_mnist.py'
    spec = importlib.util.spec_from_file_location('make_vtab1k_fashion_mnist', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_is_deterministic_and_matches_committed(tmp_path):
    if not DEB_SRC.is_dir():
        pytest.skip(f'{DEB_SRC} missing (apt-get install dataset-fashion-mnist)')
    gen = load_generator()
    outs = [tmp_path / 'a', tmp_path / 'b']
    for out in outs:
        assert gen.main(['--out', str(out), '--num-test', '25']) == 0
    cmp = filecmp.dircmp(outs[0], outs[1])
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    for sub in ('images/train', 'images/test'):
        names = sorted(p.name for p in (outs[0] / sub).iterdir())
        _, mismatch, errors = filecmp.cmpfiles(outs[0] / sub, outs[1] / sub, names,
                                               shallow=False)
        assert not mismatch and not errors
    # Same seed -> same draw as the committed folder (test.txt is a prefix of it).
    for name in ('train800.txt', 'val200.txt', 'train800val200.txt'):
        assert (outs[0] / name).read_text() == (TASK_DIR / name).read_text()
    assert (outs[0] / 'test.txt').read_text().splitlines() == \
        (TASK_DIR / 'test.txt').read_text().splitlines()[:25]
    sample = outs[0] / 'images/train/00123.png'
    assert np.array_equal(np.asarray(Image.open(sample)),
                          np.asarray(Image.open(TASK_DIR / 'images/train/00123.png')))


def test_generator_reports_missing_source(tmp_path):
    gen = load_generator()
    with pytest.raises(SystemExit, match='dataset-fashion-mnist'):
        gen.main(['--src', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'o')])


# ------------------------------------------------------------- dataset class
def test_num_classes_table():
    assert len(VTAB1K_NUM_CLASSES) == 20
    assert sum(len(v) for v in VTAB1K_GROUPS.values()) == 19
    assert set(VTAB1K_NUM_CLASSES) == set().union(*VTAB1K_GROUPS.values()) | {
        'fashion_mnist'}
    expected = dict(cifar=100, caltech101=102, dtd=47, oxford_flowers102=102,
                    oxford_iiit_pet=37, svhn=10, sun397=397, patch_camelyon=2,
                    eurosat=10, resisc45=45, diabetic_retinopathy=5, clevr_count=8,
                    clevr_dist=6, dmlab=6, kitti=4, dsprites_loc=16, dsprites_ori=16,
                    smallnorb_azi=18, smallnorb_ele=9, fashion_mnist=10)
    assert VTAB1K_NUM_CLASSES == expected
    assert resolve_task('cifar100') == 'cifar'
    assert resolve_task('oxford_pet') == 'oxford_iiit_pet'
    with pytest.raises(KeyError, match='unknown VTAB-1k task'):
        resolve_task('imagenet')


def test_mmpretrain_custom_dataset_reads_the_lists():
    """The plain CustomDataset agrees with VTAB1k on the same list file."""
    from mmpretrain.datasets import CustomDataset
    plain = CustomDataset(data_root=str(TASK_DIR), ann_file='val200.txt')
    ours = VTAB1k(task='fashion_mnist', split='val', data_root=str(TASK_DIR))
    assert len(plain) == len(ours) == 200
    for i in (0, 57, 199):
        a, b = plain.get_data_info(i), ours.get_data_info(i)
        assert Path(a['img_path']).resolve() == Path(b['img_path']).resolve()
        assert int(a['gt_label']) == int(b['gt_label'])


@pytest.mark.parametrize('split,size', [('train', 800), ('val', 200),
                                        ('trainval', 1000), ('test', NUM_TEST)])
def test_vtab1k_splits(split, size):
    ds = VTAB1k(task='fashion_mnist', split=split, data_root=str(TASK_DIR))
    assert len(ds) == size
    assert ds.metainfo['classes'] == FASHION_MNIST_CLASSES
    assert Path(ds.get_data_info(0)['img_path']).is_file()


def test_vtab1k_default_root_and_pipeline(monkeypatch):
    from mmengine.registry import DefaultScope
    monkeypatch.chdir(ROOT)
    # pipelines resolve in the current default scope, which other tests may have set
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = VTAB1k(task='fashion_mnist', split='val', pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=32),
            dict(type='PackInputs')])
        sample = ds[3]
    assert tuple(sample['inputs'].shape) == (3, 32, 32)
    label = read_list('val200.txt')[3][1]
    assert int(sample['data_samples'].gt_label) == label


def test_vtab1k_other_task_gets_generic_classes(tmp_path):
    (tmp_path / 'test.txt').write_text('images/test/000000.jpg 46\n')
    (tmp_path / 'images' / 'test').mkdir(parents=True)
    (tmp_path / 'images' / 'test' / '000000.jpg').touch()  # listed images must exist
    ds = VTAB1k(task='dtd', split='test', data_root=str(tmp_path))
    assert len(ds.metainfo['classes']) == 47 and len(ds) == 1
    with pytest.raises(ValueError, match='47 classes'):
        VTAB1k(task='dtd', split='test', data_root=str(tmp_path),
               metainfo=dict(classes=('a', 'b')))


def test_vtab1k_errors_name_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match='train800.txt'):
        VTAB1k(task='fashion_mnist', split='train', data_root=str(tmp_path))
    with pytest.raises(ValueError, match='split'):
        VTAB1k(task='fashion_mnist', data_root=str(tmp_path))
    bad = {
        'nolabel.txt': ('images/a.png 1\nimages/b.png\n', r'nolabel.txt, line 2'),
        'text.txt': ('images/a.png 1\n\nimages/b.png cat\n', r'text.txt, line 3.*integer'),
        'range.txt': ('images/a.png 10\n', r'range.txt, line 1.*outside'),
        'ext.txt': ('images/a.txt 1\n', r'ext.txt, line 1'),
        'empty.txt': ('\n', 'no samples'),
    }
    for name, (content, pattern) in bad.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(ValueError, match=pattern):
            VTAB1k(task='fashion_mnist', ann_file=name, data_root=str(tmp_path))
