"""Smoke tests of the FASeg analysis tools on tiny inputs (the real benchmark is run
by hand, see projects/faseg/README.md)."""
import importlib.util
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(ROOT, 'tools', 'analysis')


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('name', ['faseg_benchmark', 'faseg_vis_attention'])
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load(name).parse_args(['--help'])
    assert exit_info.value.code == 0 and 'Example' in capsys.readouterr().out


def test_layer_measurement_small():
    bench = _load('faseg_benchmark')
    full = bench.measure_layer(size=128, batch=1, omega=1)
    hrca = bench.measure_layer(size=128, batch=1, omega=4)
    assert full['num_keys'] == 32 * 32 and hrca['num_keys'] == 4 * 64
    assert full['cross_attn_gflops'] > 3 * hrca['cross_attn_gflops'] > 0


def test_vis_attention_png(tmp_path):
    vis = _load('faseg_vis_attention')
    out = vis.main(['--out', str(tmp_path / 'attn.png'), '--num-queries', '2'])
    assert osp.getsize(out) > 10_000
