"""Bad pretrained checkpoints given to the ViT loader (``init_cfg.checkpoint``): each is
refused naming the file, what is wrong with it and what to do."""
import zipfile

import numpy as np
import pytest
import torch

from projects.pyra import PYRAViT

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def _build(path: str) -> PYRAViT:
    model = PYRAViT(arch=ARCH, img_size=32, patch_size=8,
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    return model


def _jax_npz(path) -> None:
    """A few arrays under the names of the original (JAX) ViT checkpoints."""
    np.savez(path, **{'embedding/kernel': np.zeros((8, 8, 3, 32), np.float32),
                      'cls': np.zeros((1, 1, 32), np.float32)})


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


@pytest.mark.parametrize('name', ['vit_b16_augreg.npz', 'renamed_npz.pth'])
def test_jax_npz_checkpoint_is_not_read_yet(tmp_path, name):
    """No .npz reader exists (issue 14): the error says so and how to convert, also
    for an archive whose name does not end in .npz (torch fails on it first)."""
    path = tmp_path / name
    _jax_npz(tmp_path / 'w.npz')
    (tmp_path / 'w.npz').rename(path)
    assert zipfile.is_zipfile(path)
    with pytest.raises(NotImplementedError, match=rf'checkpoint .*{name} is a NumPy \.npz '
                       r'archive .*does not read \.npz checkpoints yet\. Convert it .*timm'
                       r'.*load_pretrained') as err:
        _build(path)
    assert '_timm.pth' in str(err.value)  # the suggested output never overwrites the input


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
