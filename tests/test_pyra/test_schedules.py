"""Merge-schedule specs: ToMe's (r, inflect) with an int inflect is ToMe's ramp, a list
is per-layer, and a 2-tuple of ints that both readings fit on a 2-layer model is refused
(rule in projects/pyra/schedules.py's docstring)."""
import pytest
from mmengine.config import Config

from projects.pyra import PYRAViT
from projects.pyra.schedules import resolve_schedule

VIT_B16 = dict(num_layers=12, num_patches=196, class_token=True)
# ToMe's r=16 on ViT-B/16 at 224 px: 16 pairs per layer until the cap (half of the
# mergeable tokens) bites in the last layer, 197 - 11 * 16 = 21 tokens -> 10 pairs.
TOME_R16_VIT_B16 = [16] * 11 + [10]


def resolve(spec, num_layers=12, num_patches=196, class_token=True):
    return resolve_schedule(spec, num_layers, num_patches, class_token)


@pytest.mark.parametrize('spec', [(16, 0), (16, 0.0), 16])
def test_int_inflect_is_tomes_constant_schedule(spec):
    assert resolve(spec) == TOME_R16_VIT_B16


@pytest.mark.parametrize('inflect', [1, -1])
def test_int_inflect_ramps_like_its_float(inflect):
    ramp = resolve((8, inflect))
    assert ramp == resolve((8, float(inflect)))
    # inflect 1: 0 -> 16 increasing; -1: 16 -> 0 decreasing (ToMe's parse_r)
    assert ramp[0] == (0 if inflect == 1 else 16) and ramp[-1] == (16 if inflect == 1 else 0)


def test_list_is_always_per_layer():
    assert resolve([16, 0]) == [16] + [0] * 11
    assert resolve([16, 1]) == [16, 1] + [0] * 10


def test_tuples_that_cannot_be_tomes_form_stay_per_layer():
    assert resolve((4, 3, 2, 1), num_layers=4, num_patches=16) == [4, 3, 2, 1]
    assert resolve((4, 3), num_layers=4, num_patches=16) == [4, 3, 0, 0]  # inflect 3 invalid


@pytest.mark.parametrize('spec, ramp, layers', [
    ((4, 0), [4, 4], [4, 0]),
    ((4, 1), [0, 8], [4, 1]),
])
def test_two_layer_model_refuses_an_ambiguous_tuple(spec, ramp, layers):
    with pytest.raises(ValueError) as err:
        resolve(spec, num_layers=2, num_patches=64)
    msg = str(err.value)
    assert f'merge_schedule={spec!r} is ambiguous for a 2-layer model' in msg
    assert f'merges {ramp}' in msg and f'merges {layers}' in msg  # both readings
    assert f'Write a list {layers!r}' in msg and f'({spec[0]}, {float(spec[1])!r})' in msg
    # the two spellings the message offers resolve to the two readings
    assert resolve(layers, num_layers=2, num_patches=64) == layers
    assert resolve((spec[0], float(spec[1])), num_layers=2, num_patches=64) == ramp


def test_two_layer_model_accepts_tuples_with_one_reading():
    assert resolve((0, 0), num_layers=2, num_patches=64) == [0, 0]  # both readings agree
    assert resolve((4, -1), num_layers=2, num_patches=64) == [8, 0]  # no negative r
    assert resolve((4, 0.0), num_layers=2, num_patches=64) == [4, 4]
    assert resolve((4, 0), num_layers=1, num_patches=64) == [4]  # 2 entries > 1 layer


@pytest.mark.parametrize('spec, match', [
    ([16, 0.5], r"entry 1 is 0\.5, not an int\. For ToMe's ramp write a tuple \(16, 0\.5\)"),
    ((16, 1.5), r'inflect must lie in \[-1, 1\].*list \[16, 1\.5\]'),
    ((16.5, 0.0), r'needs an int r >= 0, got r=16\.5'),
    (True, r'is not a schedule'),
])
def test_malformed_specs_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve(spec)


def test_config_tuple_reaches_the_backbone_as_tomes_ramp(tiny_arch):
    # the rule depends on tuple vs list: mmengine configs must keep the tuple
    cfg = Config.fromstring('schedule = (3, 0)\nlayers = [3, 0]\n', '.py')
    assert isinstance(cfg.schedule, tuple) and isinstance(cfg.layers, list)
    kw = dict(arch=tiny_arch, img_size=32, patch_size=8, merge_mode='tome')
    assert PYRAViT(merge_schedule=cfg.schedule, **kw).merge_schedule == [3, 3, 3, 3]
    assert PYRAViT(merge_schedule=cfg.layers, **kw).merge_schedule == [3, 0, 0, 0]
