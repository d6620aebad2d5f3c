"""The main job (tools/run_embedded_default.py): its method table and plug-in loader,
the linear-probe floor against an independent optimiser, the seed aggregation, the
optimizer constructor without frozen-parameter warnings, and one tiny end-to-end run
(short console, table, plotted rows)."""
import json
import logging
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import DefaultScope

from projects.pyra import PYRAViT

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))

import run_embedded_default as job  # noqa: E402
from embedded import methods, report  # noqa: E402
from projects.core.engine import linear_probe as probe  # noqa: E402
from projects.core.engine.schedule import set_max_epochs  # noqa: E402
from projects.core.engine.trainable_only_optim import TrainableOnlyOptimWrapperConstructor  # noqa: E402,E501

TINY = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


# ------------------------------------------------------------------ method table
def test_every_method_resolves_and_the_default_is_the_readme_set():
    for name, spec in methods.METHODS.items():
        if methods.is_plugin(spec):
            assert spec == f'projects.{name}.embedded:run_embedded'
        else:
            assert osp.isfile(osp.join(methods.CONFIG_DIR, spec)), (name, spec)
    assert {'lora', 'tome-lora', 'pyra-lora', 'dyt', 'dyt-moe', 'spt-lora', 'spvit',
            'esta'} <= set(methods.METHODS)
    assert job.parse_args([]).methods == ['lora', 'pyra-lora']
    # names, config paths (relative to configs/ or the repo) and plug-ins all reach a method
    cfg = 'configs/' + methods.METHODS['dyt']
    args = job.parse_args(['--methods', 'lora', cfg, 'pkg.mod:run_embedded'])
    assert [methods.method_name(m) for m in args.methods] == ['lora', 'dyt-mlp-r0.5', 'pkg']
    assert methods.resolve(cfg) == osp.join(ROOT, cfg)
    with pytest.raises(SystemExit):
        job.parse_args(['--methods', 'no-such-method'])
    assert job.parse_args(['--methods', 'esta']).protocol == 'test'


def test_plugins_run_under_the_val_protocol_only_when_they_take_it(tmp_path, monkeypatch):
    # SPViT and ESTA apply the protocol to their own configs
    args = job.parse_args(['--methods', 'lora', 'spvit', 'esta', '--protocol', 'val'])
    assert args.protocol == 'val'
    # a plug-in without a protocol parameter would report test as val200: refused
    (tmp_path / 'fixed_split_plugin.py').write_text(
        'def run_embedded(work_dir, seed, epochs, cfg_options):\n    return {}\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit):
        job.parse_args(['--methods', 'fixed_split_plugin:run_embedded', '--protocol', 'val'])
    job.parse_args(['--methods', 'fixed_split_plugin:run_embedded'])


@pytest.mark.parametrize('protocol,train,test,fit', [
    ('test', 'trainval', 'test', ('train', 'val')), ('val', 'train', 'val', ('train',))])
def test_protocol_sets_the_splits_and_the_lpft_fit(protocol, train, test, fit):
    from projects.core.engine.protocol import apply_protocol
    cfg = apply_protocol(Config.fromfile(osp.join(methods.CONFIG_DIR, methods.METHODS['lora'])),
                         protocol)
    assert cfg.train_dataloader.dataset.split == train
    assert cfg.test_dataloader.dataset.split == test
    hooks = [h for h in cfg.custom_hooks if h['type'] == 'LinearProbeInitHook']
    assert len(hooks) == 1 and tuple(hooks[0]['fit_splits']) == fit
    with pytest.raises(ValueError, match='protocol'):
        apply_protocol(cfg, 'train')


def test_default_merging_rows_are_the_recipe_stretched_to_10_epochs():
    """The main job's ToMe / PYRA rows train 10 epochs (chosen on val200 with
    ``--epochs 10`` on the 3-epoch recipe): their configs must be exactly that run and
    differ from the LoRA row only by the merging."""
    def load(name: str) -> Config:
        return Config.fromfile(osp.join(methods.CONFIG_DIR, methods.METHODS[name]))

    stretched = set_max_epochs(load('lora'), 10)
    assert stretched.model.backbone.pop('type') == 'ComposableViT'
    for name, mode in (('tome-lora', 'tome'), ('pyra-lora', 'pyra')):
        cfg = load(name)
        assert cfg.train_cfg == stretched.train_cfg
        assert cfg.param_scheduler == stretched.param_scheduler
        backbone = cfg.model.backbone
        assert (backbone.type, backbone.merge_mode, backbone.merge_schedule) == \
            ('PYRAViT', mode, 'low')
        for key in ('type', 'merge_mode', 'merge_schedule'):  # the merging, nothing else
            backbone.pop(key)
        assert cfg.model == stretched.model
        for key in ('optim_wrapper', 'train_dataloader', 'test_dataloader', 'custom_hooks'):
            assert cfg[key] == stretched[key], key


def test_plugin_loader_errors_name_the_module_and_the_fix(tmp_path, monkeypatch, capsys):
    with pytest.raises(ImportError, match=r"'projects\.nope\.embedded' cannot be imported"
                       r".*run_embedded\(work_dir, seed, epochs, cfg_options\)"):
        methods.load_plugin('projects.nope.embedded:run_embedded')
    with pytest.raises(ValueError, match="expected 'package.module:function'"):
        methods.load_plugin('projects.pyra:')
    with pytest.raises(ImportError, match="has no function 'missing'"):
        methods.load_plugin('projects.pyra:missing')
    # a plug-in that exists is called as documented and its result checked
    (tmp_path / 'toy_plugin.py').write_text(
        'def run_embedded(work_dir, seed, epochs, cfg_options):\n'
        '    return dict(model=None, metrics={"accuracy/top1": 50.0 + seed},\n'
        '                trainable=3, runner=None, seen=(work_dir, epochs, cfg_options))\n'
        'def bad(work_dir, seed, epochs, cfg_options):\n'
        '    return dict(model=None, metrics={})\n'
        'def drawn(work_dir, seed, epochs, cfg_options):\n'
        '    import os\n'
        '    os.makedirs(work_dir, exist_ok=True)\n'
        '    path = os.path.join(work_dir, "ops.png")\n'
        '    open(path, "wb").close()\n'
        '    return dict(model=None, metrics={"accuracy/top1": 1.0}, trainable=0,\n'
        '                runner=None, pictures=[path, path + ".missing"][:seed])\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    args = job.parse_args(['--methods', 'toy_plugin:run_embedded', '--epochs', '2'])
    res = job.run_plugin('toy', 'toy_plugin:run_embedded', args, 3, str(tmp_path))
    assert res['metrics']['accuracy/top1'] == 53.0
    assert res['seen'] == (osp.join(str(tmp_path), 'toy'), 2, None)
    with pytest.raises(TypeError, match=r"must return a dict with keys \['model', "
                       r"'metrics', 'trainable', 'runner'\]"):
        job.run_plugin('bad', 'toy_plugin:bad', args, 0, str(tmp_path))
    # pictures a plug-in draws are printed; a missing one is an error, not a silent gap
    job.run_plugin('drawn', 'toy_plugin:drawn', args, 1, str(tmp_path))
    assert f'drawn: picture {tmp_path / "drawn" / "ops.png"}' in capsys.readouterr().out
    with pytest.raises(TypeError, match='pictures must be a list of existing image paths'):
        job.run_plugin('drawn', 'toy_plugin:drawn', args, 2, str(tmp_path))


def test_mlp_token_rate_counts_patch_tokens_that_ran_the_mlp():
    plain = PYRAViT(arch=TINY, img_size=32, patch_size=8).eval()
    images = torch.randn(3, 3, 32, 32)
    assert job.mlp_token_rate(plain, images) == 1.0
    dyt = PYRAViT(arch=TINY, img_size=32, patch_size=8,
                  block_cfg=dict(mlp_gate=dict(type='DyTDispatcher'))).eval()
    with torch.no_grad():
        for blk, bias in zip(dyt.blocks, (5.0, -5.0)):  # layer 0 all on, layer 1 all off
            blk.mlp_gate.score.weight.zero_()
            blk.mlp_gate.score.bias.fill_(bias)
    assert job.mlp_token_rate(dyt, images) == 0.5


# ------------------------------------------------------------------ linear probe
def _numpy_logistic(x, y, k, l2, steps=20000, lr=0.5):
    """Independent reference: plain gradient descent on the same objective (features
    standardised, L2 on their weights), written with numpy's softmax gradient (no
    autograd, no L-BFGS), folded back to raw features at the end."""
    mean, std = x.mean(0), x.std(0, ddof=1)
    raw, x = x, (x - mean) / std
    n, d = x.shape
    w, b = np.zeros((k, d)), np.zeros(k)
    onehot = np.eye(k)[y]
    for _ in range(steps):
        z = x @ w.T + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / n
        w -= lr * (g.T @ x + l2 * w)
        b -= lr * g.sum(0)
    w_raw = w / std
    return w_raw, b - w_raw @ mean


def test_linear_probe_is_the_converged_regularised_logistic_regression():
    rng = np.random.default_rng(0)
    k, d, n = 3, 5, 60
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, d)) + np.eye(k, d)[y] * 1.5 + 3.0  # offset: tests the fold-back
    l2 = 1e-2
    w, b = probe.fit_logistic(torch.tensor(x), torch.tensor(y), k, l2)
    w_ref, b_ref = _numpy_logistic(x, y, k, l2)
    np.testing.assert_allclose(w.numpy(), w_ref, atol=2e-3)
    # the softmax is invariant to a constant added to every bias: compare centred biases
    np.testing.assert_allclose(b.numpy() - b.numpy().mean(), b_ref - b_ref.mean(), atol=2e-3)
    assert probe.accuracy(torch.tensor(x), torch.tensor(y), w, b) == pytest.approx(
        100 * np.mean((x @ w_ref.T + b_ref).argmax(1) == y))
    with pytest.raises(ValueError, match='l2 must be > 0'):
        probe.fit_logistic(torch.tensor(x), torch.tensor(y), k, 0.0)


def test_a_near_constant_feature_gets_no_exploding_weight():
    """A feature whose std is 1e-6 of the others' is standardised with the relative
    floor, so its folded weight stays of the others' order (LP-FT on the distilled Ti
    gave weights up to 304 and a first loss of 185 without the floor)."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 90)
    x = rng.normal(size=(90, 4)) + np.eye(3, 4)[y] * 2.0
    x[:, 3] = 5.0 + 1e-6 * rng.normal(size=90) + 1e-6 * y  # near-constant, weakly tied to y
    w, b = probe.fit_logistic(torch.tensor(x), torch.tensor(y), 3, 1e-2)
    mean, std = probe.standardise(torch.tensor(x))
    median = torch.tensor(x).std(0).median()
    assert std[3] == pytest.approx(probe.REL_STD_FLOOR * median.item())
    assert w[:, 3].abs().max() <= 10 * w[:, :3].abs().max()
    # moving that feature by one typical std changes the logits by a bounded amount
    moved = torch.tensor(x, dtype=torch.float32)
    moved[:, 3] += std[:3].mean()
    base = torch.tensor(x, dtype=torch.float32) @ w.T + b
    assert ((moved @ w.T + b) - base).abs().max() < 20


def test_l2_is_chosen_on_val_by_accuracy_ties_to_the_stronger():
    rng = np.random.default_rng(1)
    y = torch.tensor(rng.integers(0, 2, 40))
    x = torch.tensor(rng.normal(size=(40, 3))) + y[:, None] * 2.0
    train, val = (x[:30], y[:30]), (x[30:], y[30:])
    best, scores = probe.choose_l2(train, val, 2, grid=(1e-4, 1e-2, 10.0))
    for l2, score in scores.items():
        w, b = probe.fit_logistic(*train, 2, l2)
        assert score == probe.accuracy(*val, w, b)
    top = max(scores.values())
    assert best == max(l2 for l2, s in scores.items() if s == top)
    # by validation cross-entropy: the lowest wins, a weak L2 that only ties on
    # accuracy loses (over-confident)
    best_loss, losses = probe.choose_l2(train, val, 2, grid=(1e-4, 1e-2, 10.0),
                                        criterion='loss')
    for l2, loss in losses.items():
        w, b = probe.fit_logistic(*train, 2, l2)
        ref = torch.nn.functional.cross_entropy(val[0].float() @ w.T + b, val[1]).item()
        assert loss == pytest.approx(ref)
    assert best_loss == min(losses, key=losses.get)
    with pytest.raises(ValueError, match="criterion must be 'accuracy' or 'loss'"):
        probe.choose_l2(train, val, 2, criterion='f1')


# ------------------------------------------------------------------ LP-FT hook
def test_lpft_hook_of_the_recipe_sets_the_head_to_the_probe_and_skips_on_resume(
        data_root, monkeypatch):
    """The shared recipe's LinearProbeInitHook (what tools/train.py runs too): L2 chosen
    train -> val, the head = the probe fitted on train + val features of the model's
    initial state, recomputed here by hand; a resumed run keeps its head."""
    from types import SimpleNamespace

    from mmengine.logging import MMLogger
    from mmengine.registry import HOOKS

    from projects.core.engine.hooks.linear_probe_init_hook import split_loader
    from projects.core.engine.model_builder import build_model_from_cfg
    monkeypatch.chdir(data_root)
    cfg = Config.fromfile(osp.join(ROOT, 'configs', methods.METHODS['lora']))
    cfg.model.backbone.update(arch=TINY, init_cfg=None)
    cfg.model.head.in_channels = 32
    hook_cfg = [h for h in cfg.custom_hooks if h['type'] == 'LinearProbeInitHook']
    assert len(hook_cfg) == 1 and tuple(hook_cfg[0]['fit_splits']) == ('train', 'val')
    grid = (1e-3, 1e-1, 10.0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # as inside a Runner
        model = build_model_from_cfg(cfg).eval()
        hook = HOOKS.build(dict(hook_cfg[0], l2_grid=grid))
    # the config's top-level data_preprocessor is in the model, as a Runner puts it
    torch.testing.assert_close(model.data_preprocessor.mean.flatten(),
                               torch.tensor(cfg.data_preprocessor.mean))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        before = model.head.fc.weight.detach().clone()
        runner = SimpleNamespace(model=model, cfg=cfg, iter=0,
                                 logger=MMLogger.get_instance('lpft_test'))
        hook.before_train(runner)
        feats = {s: probe.extract(model, split_loader(cfg, s)) for s in ('train', 'val')}
    losses = {}  # the hook's default criterion: validation cross-entropy, by hand
    for l2 in grid:
        w, b = probe.fit_logistic(*feats['train'], 10, l2)
        logp = torch.log_softmax(feats['val'][0] @ w.T + b, 1)
        losses[l2] = -logp[torch.arange(len(logp)), feats['val'][1]].mean().item()
    best = min(losses, key=losses.get)
    assert hook.fitted['val_scores'] == pytest.approx(losses, rel=1e-5)
    w, b = probe.fit_logistic(torch.cat([feats['train'][0], feats['val'][0]]),
                              torch.cat([feats['train'][1], feats['val'][1]]), 10, best)
    assert hook.fitted['l2'] == best
    assert torch.equal(model.head.fc.weight, w) and torch.equal(model.head.fc.bias, b)
    assert not torch.equal(before, w)
    # resumed training: the head comes from the checkpoint, the hook leaves it alone
    with torch.no_grad():
        model.head.fc.weight.zero_()
    runner.iter = 3
    hook.before_train(runner)
    assert model.head.fc.weight.abs().sum() == 0


# ------------------------------------------------------------------ aggregation
def test_seed_aggregation_is_mean_and_sample_std():
    accs = {0: 70.0, 1: 72.5, 2: 74.25}
    per_seed = {s: {'linear-probe': dict(acc=60.0 + s, img_per_s=100.0 + s, gflops=1.0,
                                         mlp_tokens=1.0, trainable=10, minutes=1.0),
                    'lora': dict(acc=a, img_per_s=90.0, gflops=1.0, mlp_tokens=1.0,
                                 trainable=20, minutes=2.0 * (s + 1))}
                for s, a in accs.items()}
    rows = report.aggregate(per_seed)
    assert rows['lora']['acc'] == pytest.approx(np.mean(list(accs.values())))
    assert rows['lora']['acc_std'] == pytest.approx(np.std(list(accs.values()), ddof=1))
    assert rows['lora']['minutes'] == pytest.approx(4.0)
    assert rows['linear-probe']['img_per_s'] == pytest.approx(101.0)
    assert rows['lora']['seeds'] == 3
    assert report.aggregate({0: per_seed[0]})['lora']['acc_std'] == 0.0
    table = report.format_table(rows, 'title', 'linear-probe')
    ref = f'{np.mean(list(accs.values())):.2f} ± {np.std(list(accs.values()), ddof=1):.2f} %'
    assert ref in table[3] and table[2].startswith('linear-probe')


# ------------------------------------------------------------------ optimizer
def test_trainable_only_constructor_builds_the_default_groups_without_warnings():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = PYRAViT(arch=TINY, img_size=32, patch_size=8, frozen=True,
                        lora_cfg=dict(rank=2, alpha=2))
        cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3,
                                                       weight_decay=1e-4))
        paramwise = dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0)
        names_before = [n for n, _ in model.named_parameters()]
        logger = MMLogger.get_current_instance()
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logger.addHandler(handler)
        try:
            ours = TrainableOnlyOptimWrapperConstructor(cfg, paramwise)(model)
            n_ours = len(records)
            ref = DefaultOptimWrapperConstructor(cfg, paramwise)(model)
        finally:
            logger.removeHandler(handler)
    skipped = [r for r in records if 'is skipped since' in r.getMessage()]
    assert len(skipped) > 20 and all(records.index(r) >= n_ours for r in skipped)

    def groups(wrapper):
        return [(id(g['params'][0]), g.get('weight_decay'), g.get('lr'))
                for g in wrapper.optimizer.param_groups]
    assert groups(ours) == groups(ref)
    assert [n for n, _ in model.named_parameters()] == names_before  # order restored


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope='module')
def tiny_run(data_root, tmp_path_factory):
    """The job as a user runs it, on the tiny real split of ``data_root`` (train 8,
    val 4, test 8), a random 2-layer 32-dim ViT at 112 px, LoRA only, 2 seeds of 1
    epoch (3 iterations), one probe L2."""
    work = str(tmp_path_factory.mktemp('embedded_job'))
    cfg = osp.join(work, 'lora_tiny.py')  # the shared recipe, a 2-layer 32-dim ViT
    with open(cfg, 'w') as f:
        f.write(f"_base_ = ['{osp.join(ROOT, 'configs', methods.METHODS['lora'])}']\n"
                'model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=2, '
                'num_heads=2, feedforward_channels=64), init_cfg=None), '
                'head=dict(in_channels=32))\n')
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'run_embedded_default.py'),
           '--methods', cfg, '--probe-config', cfg, '--seeds', '0', '1', '--epochs', '1',
           '--bench-batch', '4', '--bench-repeats', '1', '--work-dir', work, '--l2-grid', '0.1',
           '--cfg-options', 'train_dataloader.batch_size=4',
           'train_dataloader.num_workers=0', 'test_dataloader.num_workers=0']
    proc = subprocess.run(cmd, cwd=data_root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, proc


def test_tiny_run_prints_a_short_console_and_the_table(tiny_run):
    work, proc = tiny_run
    out_lines = proc.stdout.strip().splitlines()
    # the table (title, header, probe and lora rows) and the paths line; nothing else
    assert len(out_lines) == 5, proc.stdout
    assert [ln.split()[0] for ln in out_lines[2:4]] == ['linear-probe', 'lora']  # file stem
    assert out_lines[4].startswith('table: ') and 'acc-vs-throughput.png' in out_lines[4]
    # stderr: progress bars only (2 rows x 2 seeds), carriage-return updates
    err_lines = [ln for ln in proc.stderr.replace('\r', '\n').splitlines() if ln.strip()]
    assert not any('skipped since' in ln or 'WARNING' in ln for ln in err_lines), \
        proc.stderr[-2000:]
    # nothing on stderr but the bars (2 rows x 2 seeds, redrawn in place)
    others = [ln for ln in err_lines if not re.match(r'^\S+\s+\d+%\|', ln)]
    assert not others, others
    assert {ln.split()[0] for ln in err_lines} == {'linear-probe', 'lora'}
    # the full logs stay in the work dirs
    logs = [osp.join(d, f) for d, _, fs in __import__('os').walk(work) for f in fs
            if f.endswith('.log') and f != 'warnings.log']
    assert len(logs) >= 2 and any('Epoch(train)' in open(p).read() for p in logs)


def test_tiny_run_table_aggregates_seeds_and_the_plot_holds_every_row(tiny_run):
    work, _ = tiny_run
    with open(osp.join(work, 'table_test.json')) as f:
        saved = json.load(f)
    per_seed = {int(s): rows for s, rows in saved['per_seed'].items()}
    assert sorted(per_seed) == [0, 1]
    for name, row in saved['rows'].items():
        accs = [per_seed[s][name]['acc'] for s in (0, 1)]
        assert row['acc'] == pytest.approx(np.mean(accs))
        assert row['acc_std'] == pytest.approx(np.std(accs, ddof=1))
        # 8 test images: every accuracy is a multiple of 12.5 %
        assert all(a % 12.5 == pytest.approx(0) or a % 12.5 == pytest.approx(12.5)
                   for a in accs)
    assert per_seed[0]['linear-probe']['trainable'] == 32 * 10 + 10
    fig = report.build_figure(saved['rows'], 't')
    ax = fig.axes[0]
    plotted = {t.get_text(): t.xy for t in ax.texts}
    assert set(plotted) == {'linear-probe', 'lora'}
    for name, (x, y) in plotted.items():
        assert (x, y) == pytest.approx((saved['rows'][name]['img_per_s'],
                                        saved['rows'][name]['acc']))
    assert osp.getsize(osp.join(work, 'table_test_acc-vs-throughput.png')) > 1000


def test_dyt_rows_get_their_columns_and_the_table_prints_them():
    """A DyT row reports what eval ran beside what training targeted, and the complete
    model's accuracy (from projects/dyt/report.py); other rows get no such columns."""
    from types import SimpleNamespace

    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    from embedded import report
    from projects.dyt.report import dyt_report
    tiny = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='DyTImageClassifier',
            data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=3),
            backbone=dict(type='ComposableViT', arch=tiny, img_size=32, patch_size=8,
                          block_cfg=dict(mlp_gate=dict(type='DyTDispatcher', bias_init=0.3)),
                          aux_losses=[dict(type='TokenRateLoss', target=0.4)]),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=32)))
    gen = torch.Generator().manual_seed(0)
    loader = [dict(inputs=[torch.randint(0, 256, (3, 32, 32), generator=gen,
                                         dtype=torch.uint8) for _ in range(4)],
                   data_samples=[DataSample().set_gt_label(i % 3) for i in range(4)])]
    res = dict(model=model, runner=SimpleNamespace(test_dataloader=loader))
    cols = job.dyt_columns(res)
    ref = dyt_report(model, loader)
    assert cols == dict(eval_keep=ref['eval_mlp_keep_rate'], train_rate=0.4,
                        train_rate_expected=ref['train_rate_expected'],
                        complete_acc=ref['complete_top1'])
    plain = dict(model=SimpleNamespace(backbone=SimpleNamespace(blocks=[])), runner=None)
    assert job.dyt_columns(plain) == {}
    row = dict(acc=80.0, acc_std=0.0, img_per_s=10.0, gflops=1.0, mlp_tokens=0.5,
               trainable=1, minutes=1.0)
    lines = report.format_table({'linear-probe': row, 'dyt': dict(row, **cols)}, 't',
                                'linear-probe')
    assert len(lines) == 5 and lines[-1].startswith('  dyt: eval MLP keep')
    assert f'{cols["complete_acc"]:.2f} %' in lines[-1] and '40.0%' in lines[-1]
