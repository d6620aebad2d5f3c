"""Bad merge schedules and image inputs for PYRAViT that test_schedules.py /
test_backbone.py do not cover: each is refused naming the value and the fix, or
handled in a documented way."""
import numpy as np
import pytest
import torch
from PIL import Image

from projects.pyra import PYRAViT
from projects.pyra.schedules import resolve_schedule

TINY = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


@pytest.mark.parametrize('spec', [[3, -1, 0, 0], (3, -1, 0, 0)])
def test_negative_r_is_refused_with_the_fix(spec):
    with pytest.raises(ValueError, match=r'layer 1 asks for r=-1, but r counts the token pairs '
                       r'merged in that layer and must be >= 0\. Write 0 for a layer that '
                       r'merges nothing\. Full schedule: \[3, -1, 0, 0\]'):
        PYRAViT(arch=TINY, img_size=32, patch_size=8, merge_mode='tome', merge_schedule=spec)


@pytest.mark.parametrize('spec, layers', [('medium', 12), ('low', 4)])
def test_unknown_preset_is_refused_with_the_known_ones(spec, layers):
    """An unknown name, or a known one on a depth PYRA did not define it for."""
    with pytest.raises(ValueError, match=rf"merge_schedule '{spec}' is not defined for a "
                       rf"{layers}-layer vit model; presets \['high', 'low'\] exist for 12- and "
                       r'24-layer ViTs\. Pass a per-layer list of r instead\.'):
        resolve_schedule(spec, layers, 196, True)


def test_one_channel_tensor_to_a_three_channel_model():
    """The backbone names the expected and the given shape and the two fixes."""
    model = PYRAViT(arch=TINY, img_size=32, patch_size=8).eval()
    with pytest.raises(ValueError, match=r'expects images \(B, 3, H, W\), got '
                       r'\(1, 1, 32, 32\).*Load images as colour'):
        model(torch.randn(1, 1, 32, 32))


def test_grayscale_image_file_is_read_as_three_channels(tmp_path):
    """The documented handling of 1-channel image files (Fashion-MNIST is one): the
    pipelines' LoadImageFromFile decodes them as colour, so the model gets 3 equal
    channels."""
    from mmengine.registry import DefaultScope

    from projects.core.datasets.vtab1k import VTAB1k
    (tmp_path / 'images').mkdir()
    gray = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    Image.fromarray(gray, mode='L').save(tmp_path / 'images' / 'a.png')
    assert Image.open(tmp_path / 'images' / 'a.png').mode == 'L'
    (tmp_path / 'test.txt').write_text('images/a.png 3\n')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = VTAB1k(task='fashion_mnist', split='test', data_root=str(tmp_path),
                    pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
        inputs = ds[0]['inputs']
    assert tuple(inputs.shape) == (3, 32, 32)
    for channel in inputs:
        assert torch.equal(channel, torch.from_numpy(gray))
