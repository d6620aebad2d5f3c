"""Bad pretrained checkpoints given to the ViT loader (``init_cfg.checkpoint``): each is
refused naming the file, what is wrong with it and what to do."""
import zipfile

import numpy as np
import pytest
import torch

from projects.core.checkpoint.jax_npz import jax_from_timm
from projects.pyra import PYRAViT

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def _build(path: str) -> PYRAViT:
    model = PYRAViT(arch=ARCH, img_size=32, patch_size=8,
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    return model


def _jax_npz(path, drop: str = '') -> None:
    """A random PYRAViT of ``ARCH`` saved under the original (JAX) ViT names, without
    the arrays whose name contains ``drop`` (if given)."""
    state = PYRAViT(arch=ARCH, img_size=32, patch_size=8).state_dict()
    arrays = jax_from_timm(state, num_heads=ARCH['num_heads'])
    np.savez(path, **{k: v for k, v in arrays.items() if not (drop and drop in k)})


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'checkpoint .*nowhere\.pth does not exist\. '
                       r'Download or convert it .*init_cfg\.checkpoint'):
        _build(tmp_path / 'nowhere.pth')


def test_truncated_checkpoint_names_the_file(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save(PYRAViT(arch=ARCH, img_size=32, patch_size=8).state_dict(), good)
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(RuntimeError, match=r'checkpoint .*cut\.pth is not a readable PyTorch '
                       r'checkpoint .*truncated .*download or convert it again'):
        _build(cut)


def test_npz_under_a_pth_name_is_read_from_its_contents(tmp_path):
    """torch fails on it first; the archive is then recognised and read as JAX: the
    same weights as from the file under its own name."""
    _jax_npz(tmp_path / 'w.npz')
    path = tmp_path / 'renamed_npz.pth'
    path.write_bytes((tmp_path / 'w.npz').read_bytes())
    assert zipfile.is_zipfile(path)
    got, expect = _build(path).state_dict(), _build(tmp_path / 'w.npz').state_dict()
    fresh = PYRAViT(arch=ARCH, img_size=32, patch_size=8).state_dict()
    assert got.keys() == expect.keys()
    for key, value in expect.items():
        assert torch.equal(got[key], value), key
    assert not torch.equal(got['blocks.0.attn.qkv.weight'], fresh['blocks.0.attn.qkv.weight'])


def test_truncated_npz_names_the_file(tmp_path):
    _jax_npz(tmp_path / 'ViT-B_16.npz')
    cut = tmp_path / 'cut.npz'
    cut.write_bytes((tmp_path / 'ViT-B_16.npz').read_bytes()[:3000])
    with pytest.raises(RuntimeError, match=r'checkpoint .*cut\.npz is not a readable NumPy '
                       r'\.npz archive .*truncated .*download it again'):
        _build(cut)


def test_npz_that_is_no_jax_vit_names_the_file(tmp_path):
    """An archive of other arrays (a JAX ResNet, numpy data): not taken for a ViT."""
    np.savez(tmp_path / 'bit_r50.npz', **{'root_block/standardized_conv2d/kernel':
                                          np.zeros((7, 7, 3, 8), np.float32)})
    with pytest.raises(ValueError, match=r'checkpoint .*bit_r50\.npz: unrecognised ViT '
                       r'checkpoint: .*JAX \.npz .*root_block.*init_cfg\.checkpoint'):
        _build(tmp_path / 'bit_r50.npz')


def test_jax_npz_with_a_block_part_missing(tmp_path):
    _jax_npz(tmp_path / 'partial.npz', drop='encoderblock_1/MultiHeadDotProductAttention_1/value')
    with pytest.raises(KeyError, match=r'checkpoint .*partial\.npz: JAX ViT block '
                       r'Transformer/encoderblock_1: attention (weight|bias) of \[.value.\] '
                       r'missing'):
        _build(tmp_path / 'partial.npz')


def test_foreign_checkpoint_lists_missing_and_unexpected_keys(tmp_path):
    """A ViT of another depth: every key that does not fit is listed."""
    deeper = PYRAViT(arch=dict(ARCH, num_layers=3), img_size=32, patch_size=8)
    state = deeper.state_dict()
    state.pop('blocks.1.norm2.weight')
    path = tmp_path / 'deeper.pth'
    torch.save(state, path)
    with pytest.raises(KeyError, match=r'deeper\.pth .*does not match the backbone: missing in '
                       r'checkpoint: blocks\.1\.norm2\.weight; unexpected in checkpoint: '
                       r'blocks\.2\..*Check arch'):
        _build(path)


def test_checkpoint_of_another_architecture_names_the_file(tmp_path):
    """Not a ViT at all (a ResNet): the file, the key naming schemes expected and the
    way to select a backbone inside a bigger checkpoint."""
    torch.save({'conv1.weight': torch.zeros(4, 3, 7, 7), 'fc.weight': torch.zeros(2, 4)},
               tmp_path / 'resnet.pth')
    with pytest.raises(ValueError, match=r'checkpoint .*resnet\.pth: unrecognised ViT '
                       r'checkpoint: .*first keys: .*conv1\.weight.*init_cfg\.prefix'):
        _build(tmp_path / 'resnet.pth')
