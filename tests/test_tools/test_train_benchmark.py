"""The analysis library and the benchmark tool's training and protocol modes, on tiny
configs: a training step changes exactly the parameters the method trains and runs
the method's own loss path; the memory worker measures in its own process; the
protocol's ratios are against the fastest baseline of each run; real images are the
config's test images; every tool answers --help; reports follow the schema."""
import importlib.util
import json
import math
import os.path as osp
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SNAP = osp.join(ROOT, 'tests', 'data', 'analysis_snapshots', 'configs')
LORA, DYT = osp.join(SNAP, 'tiny_lora.py'), osp.join(SNAP, 'tiny_dyt.py')
PYRA = osp.join(SNAP, 'tiny_pyra-lora.py')
TOOLS = ['benchmark', 'dyt_benchmark', 'dyt_visualize', 'esta_eval_stitches',
         'esta_ls_residual', 'esta_train_memory', 'faseg_benchmark', 'faseg_vis_attention',
         'spt_benchmark', 'spt_plot_allocation', 'spvit_benchmark', 'spvit_plot_arch',
         'visualize_merging']


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f'_train_bench_{name}', osp.join(ROOT, 'tools', 'analysis', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the tiny configs' data roots are relative


@pytest.mark.parametrize('name', TOOLS)
def test_every_tool_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _tool(name).main(['--help'])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith('usage:') and 'Example' in out


def test_a_step_trains_exactly_the_trainable_parameters():
    from projects.combos.train_cost import TrainMethod, TrainStep
    step = TrainStep(TrainMethod('lora', LORA, {'model.backbone.frozen': True,
                                                'model.backbone.drop_path_rate': 0.0}),
                     batch=2)
    assert not all(p.requires_grad for p in step.model.parameters())  # frozen base
    before = {n: p.detach().clone() for n, p in step.model.named_parameters()}
    step()
    changed = {n for n, p in step.model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in step.model.named_parameters() if p.requires_grad}
    assert changed == trainable and any('lora_B' in n for n in trainable)
    assert step.counts() == dict(trainable=sum(before[n].numel() for n in trainable),
                                 total=sum(p.numel() for p in before.values()))


@pytest.mark.parametrize('distill, passes', [(True, 2), (False, 1)])
def test_dyt_step_runs_its_complete_model_pass(distill, passes):
    """DyT's loss with distill runs the backbone twice (dynamic + complete model)."""
    from projects.combos.train_cost import TrainMethod, TrainStep
    step = TrainStep(TrainMethod('dyt', DYT, {'model.distill': distill}), batch=2)
    calls = []
    step.model.backbone.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))
    step()
    assert len(calls) == passes


def test_train_mode_table(tmp_path):
    bench = _tool('benchmark')
    out = tmp_path / 'train.json'
    report = bench.main(['--train', LORA, PYRA, '--batch-size', '2', '--repeats', '1',
                         '--warmup', '0', '--inline', '--steps', '1', '--json', str(out),
                         '--cfg-options', 'model.backbone.drop_path_rate=0.0'])
    assert json.load(open(out))['rows'] == json.loads(json.dumps(report['rows']))
    rows = {r['method']: r for r in report['rows']}
    assert list(rows) == ['tiny_lora.py', 'tiny_pyra-lora.py'] and report['batch'] == 2
    base = report['baseline']
    assert base == 'tiny_lora.py'  # no full fine-tuning row: the first row is the baseline
    assert rows[base]['time_ratio'] == 1.0
    for row in rows.values():
        assert row['seconds_per_step'] > 0 and row['peak_mb'] > 0
        assert math.isclose(row['images_per_s'] * row['seconds_per_step'], 2)
    # PYRA adds its token-modulation parameters to the same LoRA model
    assert rows['tiny_pyra-lora.py']['trainable'] > rows['tiny_lora.py']['trainable']


def test_train_methods_resolve_to_the_embedded_configs():
    bench = _tool('benchmark')
    from projects.combos.train_cost import method_config
    methods = {m.name: m for m in bench.train_methods([])}
    assert list(methods) == list(bench.TRAIN_METHODS)
    for m in methods.values():
        assert osp.isfile(m.config) and '/embedded/' in m.config
    full = method_config(methods['full'], 32)
    assert full.model.backbone.lora_cfg is None and full.model.backbone.frozen is False
    assert method_config(methods['lora'], 32).model.backbone.lora_cfg is not None
    assert method_config(methods['dyt-no-complete'], 32).model.distill is False
    assert method_config(methods['dyt'], 32).model.distill is True
    assert method_config(methods['esta-pst'], 32).train_dataloader.batch_size == 32
    with pytest.raises(SystemExit, match='neither a method'):
        bench.train_methods(['no-such-method'])


def test_memory_worker_measures_its_own_process(tmp_path):
    """The child's peak is its own (the parent holds 300 MiB the child must not
    report); a failing target names itself."""
    from projects.core.analysis.worker import run_in_child
    target = tmp_path / 'target.py'
    target.write_text(
        'def touch(mib):\n'
        '    b = bytearray(mib * 2**20)\n'
        '    b[::4096] = b"\\x01" * len(b[::4096])\n'
        '    kb = [int(l.split()[1]) for l in open("/proc/self/status") '
        'if l.startswith("VmHWM:")][0]\n'
        '    return dict(peak_mb=kb / 1024)\n'
        'def fail():\n'
        '    raise ValueError("broken on purpose")\n')
    held = bytearray(300 * 2**20)
    held[::4096] = b'\x01' * len(held[::4096])
    peak = run_in_child(f'{target}:touch', dict(mib=64))['peak_mb']
    assert 64 <= peak < 200
    del held
    with pytest.raises(RuntimeError, match='broken on purpose'):
        run_in_child(f'{target}:fail', {})
    with pytest.raises(ValueError, match='no function'):
        run_in_child(f'{target}:nothing', {}, inline=True)


def test_protocol_ratios_are_against_the_strongest_baseline(tmp_path):
    bench = _tool('benchmark')
    report = bench.main([LORA, PYRA, '--protocol',
                         '--batch-size', '3', '--repeats', '1', '--warmup', '0',
                         '--json', str(tmp_path / 'p.json')])
    groups = {}
    for row in report['rows']:
        groups.setdefault((row['batch'], row['part']), []).append(row)
    assert set(groups) == {(1, 'backbone'), (1, 'model'), (3, 'backbone'), (3, 'model')}
    for rows in groups.values():
        assert rows[0]['config'].startswith('plain ViT') and len(rows) == 3
        base = next(r for r in rows if r['config'] == rows[0]['baseline'])
        assert base['speed_ratio'] == 1.0 and base['config'] in (rows[0]['config'],
                                                                  rows[1]['config'])
        assert base['images_per_s'] == max(r['images_per_s'] for r in rows[:2])
        assert rows[2]['flops_ratio'] > 1.1  # merging 10 + 6 of 50 tokens: ~1.15x
    assert report['rows'][0]['config'].endswith(')') and '[LoRA folded]' in \
        report['rows'][1]['config']  # the protocol folds LoRA as deployed


def test_real_images_are_the_test_split_and_repeat_is_one_image():
    from mmengine.config import Config

    from projects.core.analysis.loading import (build_model, dataset_samples,
                                                input_images)
    cfg = Config.fromfile(LORA)
    model = build_model(cfg)
    real = input_images(cfg, model, 3, (56, 56), 'real')
    first = model.data_preprocessor(dict(inputs=[dataset_samples(cfg, 1)[0]['inputs']],
                                         data_samples=None), False)['inputs']
    torch.testing.assert_close(real[:1], first)
    assert not torch.equal(real[0], real[1])  # three different images
    repeat = input_images(cfg, model, 3, (56, 56), 'repeat')
    assert torch.equal(repeat[0], repeat[2]) and torch.equal(repeat[0], real[0])
    with pytest.raises(ValueError, match='use one of'):
        input_images(cfg, model, 3, (56, 56), 'noise')


def test_bf16_autocast_on_cpu_and_fp16_refused():
    from projects.core.analysis.protocol import amp_context, under_amp
    layer = torch.nn.Linear(4, 4)
    assert under_amp(layer, 'bf16')(torch.randn(2, 4)).dtype == torch.bfloat16
    assert under_amp(layer, None)(torch.randn(2, 4)).dtype == torch.float32
    with pytest.raises(ValueError, match='CUDA only'):
        amp_context('fp16', 'cpu')


def test_report_schema_and_table():
    from projects.core.analysis.report import (check_report, format_table, make_report,
                                               ratio, write_report)
    report = make_report('t', [dict(name='a', v=float('nan'), r=2.0)], batch=4)
    with pytest.raises(ValueError, match='header fields'):
        make_report('t', [], version=2)
    with pytest.raises(ValueError, match='schema'):
        check_report(dict(report, schema='other'))
    table = format_table(report['rows'], [('name', 'name', 's'), ('v', 'value', '.1f'),
                                          ('r', 'ratio', ratio()), ('missing', 'm', 'd')])
    assert table.splitlines() == ['name value ratio m', 'a      n/a 2.00x -']
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        write_report(report, osp.join(tmp, 'r.json'))
        assert json.load(open(osp.join(tmp, 'r.json')))['rows'][0]['v'] is None  # no NaN


@pytest.mark.parametrize('argv, message', [
    ([], 'give at least one config'),
    (['--train', '--protocol'], 'runs its own fixed set'),
    ([LORA, '--amp', 'fp16'], 'CUDA only'),
])
def test_bad_flag_combinations_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _tool('benchmark').parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
