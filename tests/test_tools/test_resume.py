"""``tools/train.py --resume`` repeats an uninterrupted seeded run exactly.

Cases (``RESUME_CASES`` in conftest.py, runs made by the ``resume_runs`` fixture):

* mmpretrain, epoch-based: 3 epochs, killed right after the epoch-1 checkpoint,
  resumed with ``--resume`` (latest checkpoint of the work dir);
* mmseg, iteration-based: 8 iterations, killed right after the iteration-4
  checkpoint, resumed with ``--resume <checkpoint>`` (mmengine replays the 4 trained
  batches through the pipeline before continuing);
* DyT (mmpretrain, epoch-based, Gumbel-noise dispatchers and the distillation pass):
  as the first case, resumed with ``--resume <checkpoint>``.

Both tiny models use dropout and drop-path and validate at the checkpoint step. The
control resumes from the same checkpoint without its RNG states and must *not*
match, which shows the comparison can fail.
"""
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

import projects  # noqa: F401  (allows weights-only loading of mmengine checkpoints)

LIBS = ('cls', 'seg', 'dyt')


@pytest.mark.parametrize('lib', LIBS)
def test_interrupted_after_checkpoint(lib, resume_runs, tools):
    r = resume_runs[lib]
    _, _, ckpt_k, ckpt_n = tools.RESUME_CASES[lib]
    tools.check(r['full_result'])
    tools.check(r['cut_result'], tools.INTERRUPT_EXIT_CODE)
    assert osp.exists(osp.join(r['full'], ckpt_n))
    # killed right after the checkpoint: it is the only one, and the after-train
    # hooks (DumpParamsHook) never ran
    assert [f for f in r['cut_files'] if f.endswith('.pth')] == [ckpt_k]
    assert 'rng_state' in tools.load_ckpt(osp.join(r['cut'], ckpt_k))


@pytest.mark.parametrize('lib', LIBS)
def test_resume_reproduces_uninterrupted_run(lib, resume_runs, tools):
    r = resume_runs[lib]
    _, _, ckpt_k, ckpt_n = tools.RESUME_CASES[lib]
    assert 'cut_resume_result' in r, 'the interrupted run left no checkpoint'
    log = tools.check(r['cut_resume_result'])
    assert 'resumed epoch' in log, log[-3000:]
    full = tools.load_ckpt(osp.join(r['full'], ckpt_n))
    resumed = tools.load_ckpt(osp.join(r['cut'], ckpt_n))
    assert (full['meta']['epoch'], full['meta']['iter']) == \
        (resumed['meta']['epoch'], resumed['meta']['iter'])
    assert full['state_dict'].keys() == resumed['state_dict'].keys()
    for key, value in full['state_dict'].items():
        assert torch.equal(value, resumed['state_dict'][key]), key
    # optimizer moments too
    state_full, state_resumed = full['optimizer']['state'], resumed['optimizer']['state']
    assert state_full.keys() == state_resumed.keys()
    for idx, moments in state_full.items():
        for name, value in moments.items():
            assert torch.equal(value, state_resumed[idx][name]), (idx, name)
    # and the parameters the process held when training ended
    dump_full = tools.load_ckpt(osp.join(r['full'], 'params_rank0.pth'))['params']
    dump_resumed = tools.load_ckpt(osp.join(r['cut'], 'params_rank0.pth'))['params']
    for key, value in dump_full.items():
        assert torch.equal(value, dump_resumed[key]), key


@pytest.mark.parametrize('lib', LIBS)
def test_resume_without_rng_state_differs(lib, resume_runs, tools):
    r = resume_runs[lib]
    _, _, _, ckpt_n = tools.RESUME_CASES[lib]
    assert 'ctrl_resume_result' in r, 'the interrupted run left no checkpoint'
    tools.check(r['ctrl_resume_result'])
    full = tools.load_ckpt(osp.join(r['full'], ckpt_n))['state_dict']
    control = tools.load_ckpt(osp.join(r['ctrl'], ckpt_n))['state_dict']
    assert any(not torch.equal(v, control[k]) for k, v in full.items())


def test_runner_checkpoints_load_weights_only(resume_runs, tools):
    """Checkpoints written by the runner load with ``weights_only=True`` once
    ``projects`` is imported (tests/conftest.py does), as ``resume``/``load_from``
    need under torch >= 2.6."""
    for lib, (_, _, ckpt_k, ckpt_n) in tools.RESUME_CASES.items():
        for name in (ckpt_k, ckpt_n):
            ckpt = tools.load_ckpt(osp.join(resume_runs[lib]['full'], name))
            assert {'meta', 'state_dict', 'message_hub', 'optimizer',
                    'param_schedulers', 'rng_state'} <= set(ckpt)
            buffers = ckpt['message_hub']['log_scalars']
            assert buffers and all(type(b).__name__ == 'HistoryBuffer'
                                   for b in buffers.values())
            assert buffers['train/loss'].mean() > 0


def test_weights_only_load_fails_without_projects(resume_runs, tools):
    """The fix is what makes the load above work: plain torch refuses the file."""
    ckpt = osp.join(resume_runs['cls']['full'], tools.RESUME_CASES['cls'][3])
    result = subprocess.run(
        [sys.executable, '-c', f'import torch; torch.load({ckpt!r}, weights_only=True)'],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert 'Weights only load failed' in result.stderr
    assert 'HistoryBuffer' in result.stderr or 'numpy' in result.stderr


# ------------------------------------------------------- adapter-only checkpoints
# LoRA on the frozen tiny ViT, its base a pretrained-checkpoint file; checkpoints of the
# same seeded run written full and adapter-only (AdapterCheckpointHook), and the
# adapter-only run interrupted after epoch 1 and resumed with tools/train.py --resume.
ADAPTER_CFG = """_base_ = [{cls_cfg!r}]
model = dict(backbone=dict(frozen=True, lora_cfg=dict(rank=2, alpha=2),
                           init_cfg=dict(type='Pretrained', checkpoint={base!r})))
train_cfg = dict(max_epochs=2)
param_scheduler = [dict(type='CosineAnnealingLR', T_max=2, by_epoch=True, begin=0, end=2)]
default_hooks = dict(checkpoint=dict(type='AdapterCheckpointHook', interval=1,
                                     max_keep_ckpts=-1, save_mode={mode!r}))
"""


def _load_tool(tools, name: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'mmadapt_resume_{name[:-3]}',
                                                  osp.join(tools.TOOLS, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_adapter_configs(root, tools) -> dict:
    """A base checkpoint and the LoRA config over it, saving adapter-only or full."""
    from projects.vit import ComposableViT
    torch.manual_seed(0)
    vit = ComposableViT(arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                  feedforward_channels=64), img_size=56, patch_size=8)
    with torch.no_grad():
        for p in vit.parameters():
            p.normal_(std=0.1)
    base = osp.join(root, 'base.pth')
    torch.save({'state_dict': vit.state_dict()}, base)
    out = dict(base=base)
    for mode in ('adapter', 'full'):
        out[mode] = osp.join(root, f'lora_{mode}.py')
        with open(out[mode], 'w') as f:
            f.write(ADAPTER_CFG.format(cls_cfg=tools.CLS_CFG, base=base, mode=mode))
    return out


@pytest.fixture(scope='module')
def adapter_runs(data_root, tools, tmp_path_factory):
    import os
    import shutil
    root = str(tmp_path_factory.mktemp('adapter_runs'))
    cfgs = write_adapter_configs(root, tools)
    train = _load_tool(tools, 'train.py')
    runs = {name: osp.join(root, name) for name in ('adapter', 'full', 'cut')}
    cwd = os.getcwd()
    os.chdir(data_root)  # the configs' relative data_root
    try:
        train.main([cfgs['adapter'], '--work-dir', runs['adapter']])
        train.main([cfgs['full'], '--work-dir', runs['full']])
        shutil.copytree(runs['adapter'], runs['cut'],
                        ignore=shutil.ignore_patterns('epoch_2.pth', 'last_checkpoint'))
        train.main([cfgs['adapter'], '--work-dir', runs['cut'], '--resume',
                    osp.join(runs['cut'], 'epoch_1.pth')])
    finally:
        os.chdir(cwd)
    return dict(base=cfgs['base'], cfg=cfgs, **runs)


def test_adapter_only_checkpoint_plus_base_is_the_full_checkpoint(adapter_runs, tools):
    from projects.core.checkpoint.adapter_only import META_KEY
    adapter = tools.load_ckpt(osp.join(adapter_runs['adapter'], 'epoch_2.pth'))
    full = tools.load_ckpt(osp.join(adapter_runs['full'], 'epoch_2.pth'))
    base = tools.load_ckpt(adapter_runs['base'])['state_dict']
    record = adapter['meta'][META_KEY]
    assert record['base_sources'] == [dict(module='backbone',
                                           checkpoint=adapter_runs['base'])]
    assert META_KEY not in full['meta']
    saved = adapter['state_dict']
    assert set(saved) == {k for k in full['state_dict']
                          if not k.startswith('backbone.') or '.lora_' in k}
    assert len(saved) + record['base_keys'] == len(full['state_dict'])
    # the adapter tensors + the base file's tensors == the full checkpoint, bit for bit
    for key, value in full['state_dict'].items():
        part = saved[key] if key in saved else base[key[len('backbone.'):]]
        assert torch.equal(part, value), key
    for idx, moments in full['optimizer']['state'].items():
        for name, value in moments.items():
            assert torch.equal(value, adapter['optimizer']['state'][idx][name]), (idx, name)


def test_resume_from_adapter_only_checkpoint_is_exact(adapter_runs, tools):
    done = tools.load_ckpt(osp.join(adapter_runs['adapter'], 'epoch_2.pth'))
    resumed = tools.load_ckpt(osp.join(adapter_runs['cut'], 'epoch_2.pth'))
    assert done['state_dict'].keys() == resumed['state_dict'].keys()
    for key, value in done['state_dict'].items():
        assert torch.equal(value, resumed['state_dict'][key]), key
    assert done['optimizer']['state'].keys() == resumed['optimizer']['state'].keys()
    for idx, moments in done['optimizer']['state'].items():
        for name, value in moments.items():
            assert torch.equal(value, resumed['optimizer']['state'][idx][name]), (idx, name)
    # the resumed run did train (the epoch-1 adapter differs from the epoch-2 one)
    first = tools.load_ckpt(osp.join(adapter_runs['cut'], 'epoch_1.pth'))['state_dict']
    assert any(not torch.equal(v, first[k]) for k, v in resumed['state_dict'].items())


def test_resume_of_adapter_only_refuses_another_base(adapter_runs, tools, tmp_path, data_root,
                                                     monkeypatch):
    other = tmp_path / 'other_base.pth'
    state = tools.load_ckpt(adapter_runs['base'])['state_dict']
    torch.save({'state_dict': {k: v + 1e-3 for k, v in state.items()}}, other)
    train = _load_tool(tools, 'train.py')
    ckpt = osp.join(adapter_runs['cut'], 'epoch_1.pth')
    monkeypatch.chdir(data_root)
    with pytest.raises(SystemExit, match=rf'error: {re.escape(ckpt)} is an adapter-only '
                       rf'checkpoint trained on the base .*{re.escape(adapter_runs["base"])} .*'
                       rf'this config loads .*{re.escape(str(other))}, whose tensors differ'):
        train.main([adapter_runs['cfg']['adapter'], '--work-dir', str(tmp_path / 'w'), '--resume',
                    ckpt, '--cfg-options', f'model.backbone.init_cfg.checkpoint={other}'])
