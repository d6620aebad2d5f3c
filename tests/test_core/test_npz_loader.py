"""Google's JAX ViT ``.npz`` checkpoints (``ViT-B_16.npz`` and big_vision's layout) load
into PYRAViT as timm's own npz loader (``timm.models.vision_transformer._load_weights``)
loads them into timm's ViT.

The files are random weights written under the JAX names by
``projects.core.checkpoint.jax_npz.jax_from_timm``; that they are in the format timm
understands is checked first: timm reads every tensor back exactly.
"""
import numpy as np
import pytest
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer, _load_weights

from projects.core.checkpoint.jax_npz import jax_from_timm
from projects.pyra import PYRAViT

DIM, DEPTH, HEADS, PATCH = 32, 2, 4, 8
ARCH = dict(embed_dims=DIM, num_layers=DEPTH, num_heads=HEADS, feedforward_channels=2 * DIM)


def timm_vit(img_size: int = 32, **kwargs) -> VisionTransformer:
    return VisionTransformer(img_size=img_size, patch_size=PATCH, embed_dim=DIM, depth=DEPTH,
                             num_heads=HEADS, mlp_ratio=2, num_classes=7, **kwargs).eval()


def random_timm_vit(**kwargs) -> VisionTransformer:
    model = timm_vit(**kwargs)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return model


def timm_loaded(path, **kwargs) -> VisionTransformer:
    model = timm_vit(**kwargs)
    with torch.no_grad():
        _load_weights(model, str(path))
    return model


def ours_loaded(path, img_size: int = 32, **kwargs) -> PYRAViT:
    model = PYRAViT(arch=ARCH, img_size=img_size, patch_size=PATCH, out_type='raw',
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model.eval()


def image(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def tokens(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model(x)[0] if isinstance(model, PYRAViT) else model.forward_features(x)


@pytest.fixture
def vit_npz(tmp_path):
    """(path of a ViT-B_16.npz-style file with random weights, the timm model)."""
    src = random_timm_vit()
    path = tmp_path / 'ViT-tiny_8.npz'
    np.savez(path, **jax_from_timm(src.state_dict(), HEADS))
    return path, src


def test_written_file_is_read_back_exactly_by_timm(vit_npz):
    path, src = vit_npz
    with np.load(path) as f:  # the original layouts, not timm's
        assert f['embedding/kernel'].shape == (PATCH, PATCH, 3, DIM)
        assert f['Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel']\
            .shape == (DIM, HEADS, DIM // HEADS)
        assert f['Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/kernel']\
            .shape == (HEADS, DIM // HEADS, DIM)
    loaded = timm_loaded(path).state_dict()
    for key, value in src.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_pyravit_from_npz_equals_timm(vit_npz):
    path, _ = vit_npz
    x = image(32)
    ours, ref = tokens(ours_loaded(path), x), tokens(timm_loaded(path), x)
    assert ours.shape == ref.shape == (2, 1 + 16, DIM)
    assert (ours - ref).abs().max() <= 1e-5


def test_pos_embed_resized_like_timm(vit_npz):
    """A 32 px (4 x 4) file into 48 px (6 x 6) models: with bilinear resizing the whole
    model equals timm's (its npz loader resamples bilinearly); with our default
    (bicubic) the table equals timm's ``resample_abs_pos_embed``."""
    path, src = vit_npz
    x = image(48)
    ours = tokens(ours_loaded(path, img_size=48, interpolate_mode='bilinear'), x)
    ref = tokens(timm_loaded(path, img_size=48), x)
    assert ours.shape == (2, 1 + 36, DIM)
    assert (ours - ref).abs().max() <= 1e-5

    bicubic = ours_loaded(path, img_size=48).pos_embed.detach()
    expect = resample_abs_pos_embed(src.pos_embed.detach(), new_size=(6, 6),
                                    num_prefix_tokens=1, interpolation='bicubic',
                                    antialias=False)
    assert (bicubic - expect).abs().max() <= 1e-6
    assert not torch.allclose(bicubic, ours_loaded(path, img_size=48,
                                                   interpolate_mode='bilinear').pos_embed)


def big_vision_layout(jax: dict, prefix: str = 'params/') -> dict:
    """The same weights as big_vision saves them: scanned blocks (layer axis first),
    scopes numbered 0/1/0, a top-level ``pos_embedding`` without the class token's."""
    out = {}
    for key, value in jax.items():
        if key.startswith('Transformer/encoderblock_0/'):
            rest = key[len('Transformer/encoderblock_0/'):]
            for old, new in (('MultiHeadDotProductAttention_1', 'MultiHeadDotProductAttention_0'),
                             ('LayerNorm_2', 'LayerNorm_1'), ('MlpBlock_3', 'MlpBlock_0')):
                rest = rest.replace(old, new)
            out[f'{prefix}Transformer/encoderblock/{rest}'] = np.stack(
                [jax[key.replace('encoderblock_0/', f'encoderblock_{i}/')]
                 for i in range(DEPTH)])
        elif key == 'Transformer/posembed_input/pos_embedding':
            out[prefix + 'pos_embedding'] = value[:, 1:]
        elif not key.startswith('Transformer/encoderblock_'):
            out[prefix + key] = value
    return out


def test_big_vision_layout_equals_timm(tmp_path):
    """Scanned, ``params/``-prefixed, no class-token position: timm reads it into a
    ViT with ``no_embed_class``; we give the class token a zero position."""
    src = random_timm_vit()
    path = tmp_path / 'big_vision.npz'
    np.savez(path, **big_vision_layout(jax_from_timm(src.state_dict(), HEADS)))
    x = image(32)
    ref = tokens(timm_loaded(path, no_embed_class=True), x)
    ours_model = ours_loaded(path)
    assert torch.equal(ours_model.pos_embed[0, 0], torch.zeros(DIM))
    assert (tokens(ours_model, x) - ref).abs().max() <= 1e-5


def test_bfloat16_archive_is_read(tmp_path, vit_npz):
    """JAX writes bfloat16 arrays as 2-byte raw values; read as float32 of the same
    bits (timm needs jax for that, so the reference is the rounded float32 file)."""
    path, src = vit_npz
    with np.load(path) as f:
        jax = dict(f)
    as_bf16 = {k: torch.from_numpy(v).bfloat16() for k, v in jax.items()}
    raw = {k: t.view(torch.int16).numpy().view('V2') for k, t in as_bf16.items()}
    rounded = {k: t.float().numpy() for k, t in as_bf16.items()}
    np.savez(tmp_path / 'bf16.npz', **raw)
    np.savez(tmp_path / 'rounded.npz', **rounded)
    x = image(32)
    ours = tokens(ours_loaded(tmp_path / 'bf16.npz'), x)
    assert torch.equal(ours, tokens(ours_loaded(tmp_path / 'rounded.npz'), x))
    assert (ours - tokens(timm_loaded(tmp_path / 'rounded.npz'), x)).abs().max() <= 1e-5


def test_optimizer_tree_equals_timm(vit_npz, tmp_path):
    """Saved with the Flax optimizer (``opt/target/`` prefix) next to optimizer state,
    which is reported as not part of the backbone."""
    path, _ = vit_npz
    with np.load(path) as f:
        tree = {'opt/target/' + k: v for k, v in f.items()}
    tree['opt/state/step'] = np.array(1000, np.int64)
    np.savez(tmp_path / 'opt.npz', **tree)
    x = image(32)
    ours = tokens(ours_loaded(tmp_path / 'opt.npz'), x)
    assert (ours - tokens(timm_loaded(tmp_path / 'opt.npz'), x)).abs().max() <= 1e-5
    assert torch.equal(ours, tokens(ours_loaded(path), x))
