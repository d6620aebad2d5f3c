"""DyT pictures (tools/analysis/dyt_visualize.py): rates and painted patches from
dispatchers whose decisions are known by construction, then the tool run as a user
would on a tiny config and a checkpoint carrying those dispatchers."""
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from projects.core.engine.model_builder import build_model_from_cfg
from projects.pyra import PYRAViT

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis', 'dyt_visualize.py')
TINY_CLS = osp.join(ROOT, 'tests', 'data', 'configs',
                    'pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-mnist-56px.py')
ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
DYT = dict(block_cfg=dict(mlp_gate=dict(type='DyTDispatcher'),
                          adapter=dict(type='DyTAdapter', bottleneck=4)),
           block_overrides=[dict(layers=[3], mlp_gate=None)])  # layer 3: no dispatcher
# layer 0 all on, layer 1 all off, layer 2 all on, layer 3 has no dispatcher (all run)
BIASES = {0: 5.0, 1: -5.0, 2: 5.0}
EXPECTED_RATES = [1.0, 0.0, 1.0, 1.0]


def _load_tool():
    spec = importlib.util.spec_from_file_location('dyt_visualize_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vis = _load_tool()


def _set_gates(backbone) -> None:
    with torch.no_grad():
        for layer, bias in BIASES.items():
            score = backbone.blocks[layer].mlp_gate.score
            score.weight.zero_()
            score.bias.fill_(bias)


def _photo(h: int, w: int) -> np.ndarray:
    from skimage import data
    return np.ascontiguousarray(data.chelsea()[100:100 + h, 150:150 + w])


def test_rates_follow_hand_set_dispatchers_on_a_non_square_input():
    backbone = PYRAViT(arch=ARCH, img_size=32, patch_size=8, **DYT)
    _set_gates(backbone)
    masks = vis.activation_masks(backbone, torch.randn(3, 3, 32, 48))
    assert [m.shape for m in masks] == [(3, 4 * 6)] * 4  # class token dropped
    assert all(m.dtype == bool for m in masks)
    rates, overall = vis.layer_rates(masks)
    assert rates.tolist() == EXPECTED_RATES
    assert overall == 0.75
    assert not backbone.training


def test_overall_rate_counts_decisions_not_layer_means():
    # unequal token counts per layer (DyT + ToMe): 1 of 4 active, then 2 of 2
    rates, overall = vis.layer_rates([np.array([[True, False, False, False]]),
                                      np.array([[True, True]])])
    assert rates.tolist() == [0.25, 1.0]
    assert overall == 0.5  # 3 of 6 decisions, not (0.25 + 1) / 2


def test_inactive_patches_are_exactly_the_photo_and_active_ones_are_tinted():
    photo = _photo(24, 36)                      # a 2 x 3 grid of 12-px patches
    active = np.array([[True, False, False], [False, False, True]])
    out = vis.paint_active(photo, active, 12)
    assert out.shape == photo.shape and out.dtype == np.uint8
    for r in range(2):
        for c in range(3):
            got = out[12 * r:12 * r + 12, 12 * c:12 * c + 12].astype(float)
            ref = photo[12 * r:12 * r + 12, 12 * c:12 * c + 12].astype(float)
            if active[r, c]:
                # every pixel moved towards the tint colour
                assert (np.abs(got - vis.BLUE).sum(-1) < np.abs(ref - vis.BLUE).sum(-1)).all()
            else:
                assert (got == ref).all()
    with pytest.raises(vis.BadInput, match='patch grid'):
        vis.paint_active(photo, active.T, 12)


def test_token_picture_has_one_panel_per_layer_after_the_photo():
    photo = _photo(16, 24)                      # 2 x 3 patches of 8 px
    masks = [np.ones(6, bool), np.zeros(6, bool), np.array([1, 1, 0, 0, 0, 0], bool)]
    sheet = vis.token_picture(photo, masks, (2, 3), 8)
    assert sheet.shape == (16 + vis.TITLE + 2 * vis.GAP, 4 * 24 + 5 * vis.GAP, 3)

    def panel(i):
        x, y = vis.GAP + i * (24 + vis.GAP), vis.GAP + vis.TITLE
        return sheet[y:y + 16, x:x + 24]
    assert (panel(0) == photo).all() and (panel(2) == photo).all()  # input; all-off layer
    assert (panel(1) != photo).any(-1).all()                         # all-on layer
    # row-major patch order: the first two patches of the top row, nothing else
    assert (panel(3)[:8, :16] != photo[:8, :16]).any(-1).all()
    assert (panel(3)[:8, 16:] == photo[:8, 16:]).all() and (panel(3)[8:] == photo[8:]).all()
    with pytest.raises(vis.BadInput, match='token merging'):
        vis.token_picture(photo, [np.ones(4, bool)], (2, 3), 8)


@pytest.fixture(scope='module')
def tiny_dyt(tmp_path_factory):
    """A tiny DyT config file and a checkpoint whose dispatchers are BIASES."""
    tmp = tmp_path_factory.mktemp('dyt_vis')
    cfg = Config.fromfile(TINY_CLS)
    cfg.model.backbone.update(arch=ARCH, img_size=32, **DYT)
    cfg_path = str(tmp / 'tiny_dyt.py')
    cfg.dump(cfg_path)
    model = build_model_from_cfg(cfg)
    _set_gates(model.backbone)
    ckpt = str(tmp / 'trained.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    return cfg_path, ckpt, tmp


def test_tool_writes_both_pictures_from_a_checkpoint(tiny_dyt, capsys):
    cfg_path, ckpt, tmp = tiny_dyt
    out = tmp / 'pictures'
    report = vis.main([cfg_path, '--checkpoint', ckpt, '--num-images', '5', '--zoom', '2',
                       '--out-dir', str(out), '--json', str(tmp / 'rates.json')])
    assert 'over 5 images (overall 75.0%, per layer 100, 0, 100, 100)' in \
        capsys.readouterr().out
    assert [r['rate'] for r in report['rows']] == EXPECTED_RATES
    assert report['overall'] == 0.75 and report['num_images'] == 5
    tokens = np.asarray(Image.open(out / 'dyt_tokens.png').convert('RGB'))
    side = 32 * 2
    assert tokens.shape == (side + vis.TITLE + 2 * vis.GAP, 5 * side + 6 * vis.GAP, 3)
    y = vis.GAP + vis.TITLE
    panels = [tokens[y:y + side, vis.GAP + i * (side + vis.GAP):][:, :side] for i in range(5)]
    assert (panels[2] == panels[0]).all()        # layer 1 all off: the photo itself
    assert (panels[1] != panels[0]).any(-1).all()  # layer 0 all on: every pixel tinted
    with Image.open(out / 'dyt_rates.png') as chart:
        assert chart.size == vis.CHART_SIZE


@pytest.mark.parametrize('extra, message', [
    (['--num-images', '0'], '--num-images must be at least 1'),
    (['--image', 'no_such.png'], 'image not found'),
    (['--checkpoint', 'no_such.pth'], 'checkpoint not found'),
])
def test_bad_arguments_are_refused_clearly(tiny_dyt, capsys, extra, message):
    cfg_path, _, tmp = tiny_dyt
    with pytest.raises(SystemExit) as exc:
        vis.main([cfg_path, '--out-dir', str(tmp / 'bad'), *extra])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_config_without_dispatchers_or_checkpoint_without_them_is_refused(tiny_dyt, capsys):
    cfg_path, _, tmp = tiny_dyt
    with pytest.raises(SystemExit):
        vis.main([TINY_CLS, '--out-dir', str(tmp / 'bad')])
    assert 'has no DyT dispatcher' in capsys.readouterr().err
    for size, message in ((56, 'does not fit this config'),
                          (32, 'no weights for the dispatchers')):
        plain = Config.fromfile(TINY_CLS)
        plain.model.backbone.update(arch=ARCH, img_size=size)
        torch.save({'state_dict': build_model_from_cfg(plain).state_dict()}, tmp / 'plain.pth')
        with pytest.raises(SystemExit):
            vis.main([cfg_path, '--checkpoint', str(tmp / 'plain.pth'), '--out-dir',
                      str(tmp / 'bad')])
        assert message in capsys.readouterr().err
