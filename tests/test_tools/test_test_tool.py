"""``tools/test.py`` on checkpoints written by ``tools/train.py``."""
import os
import os.path as osp
import pickle
import re

import pytest
import torch


def test_test_tool_evaluates_and_dumps(resume_runs, tools, data_root):
    procs = {}
    for lib, (cfg, _, _, ckpt_n) in tools.RESUME_CASES.items():
        ckpt = osp.join(resume_runs[lib]['full'], ckpt_n)
        out = osp.join(data_root, f'preds_{lib}.pkl')
        cmd = tools.python_tool('test.py', cfg, ckpt, '--work-dir',
                                osp.join(data_root, f'work_{lib}_test'), '--out', out)
        if lib == 'seg':
            cmd += ['--show-dir', 'vis']
        procs[lib] = (tools.start(cmd, data_root), out)
    for lib, (proc, out) in procs.items():
        log = tools.check(tools.finish(proc))
        metric = 'mIoU' if lib == 'seg' else 'accuracy/top1'
        assert metric in log, log[-3000:]
        with open(out, 'rb') as f:
            preds = pickle.load(f)
        assert len(preds) == (2 if lib == 'seg' else 8)
    drawn = os.listdir(osp.join(data_root, 'vis', 'vis_data', 'vis_image'))
    assert len(drawn) == 2, drawn  # one image per val sample


# ------------------------------------------------------- adapter-only checkpoints
# LoRA on the frozen tiny ViT over a base checkpoint file: tools/test.py and
# tools/model_converters/fold_peft.py read an adapter-only checkpoint with the config's
# base (and give what the full checkpoint gives), refuse another base or none.
ADAPTER_CFG = """_base_ = [{cls_cfg!r}]
model = dict(backbone=dict(frozen=True, lora_cfg=dict(rank=2, alpha=2),
                           init_cfg=dict(type='Pretrained', checkpoint={base!r})))
"""


def _load_tool(tools, relpath: str):
    import importlib.util
    name = 'mmadapt_test_tool_' + relpath.replace('/', '_')[:-3]
    spec = importlib.util.spec_from_file_location(name, osp.join(tools.TOOLS, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def adapter_files(tools, tmp_path_factory):
    """The base, the LoRA config, and a 'trained' model saved full and adapter-only
    (as AdapterCheckpointHook writes it)."""
    from collections import OrderedDict

    from mmengine.config import Config

    from projects.core.checkpoint.adapter_only import base_record, to_adapter_checkpoint
    from projects.core.engine.model_builder import build_model_from_cfg
    from projects.vit import ComposableViT
    root = tmp_path_factory.mktemp('adapter_test_tool')
    torch.manual_seed(0)
    vit = ComposableViT(arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                  feedforward_channels=64), img_size=56, patch_size=8)
    with torch.no_grad():
        for p in vit.parameters():
            p.normal_(std=0.1)
    out = dict(root=root, base=str(root / 'base.pth'), cfg=str(root / 'lora.py'),
               adapter=str(root / 'adapter.pth'), full=str(root / 'full.pth'))
    torch.save({'state_dict': vit.state_dict()}, out['base'])
    (root / 'lora.py').write_text(ADAPTER_CFG.format(cls_cfg=tools.CLS_CFG, base=out['base']))
    model = build_model_from_cfg(Config.fromfile(out['cfg']))
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(std=0.3)
    state = OrderedDict(model.state_dict())
    torch.save({'meta': {}, 'state_dict': state}, out['full'])
    checkpoint = {'meta': {}, 'state_dict': OrderedDict(state)}
    to_adapter_checkpoint(checkpoint, model, base_record(model))
    torch.save(checkpoint, out['adapter'])
    return out


def _test(tools, files, ckpt, work, *options, out=None):
    test = _load_tool(tools, 'test.py')
    args = [files['cfg'], ckpt, '--work-dir', str(files['root'] / work)]
    args += ['--out', str(files['root'] / out)] if out else []
    return test.main(args + (['--cfg-options', *options] if options else []))


def test_test_tool_and_fold_peft_read_adapter_only_checkpoints(tools, adapter_files,
                                                              data_root, monkeypatch):
    monkeypatch.chdir(data_root)
    files = adapter_files
    assert osp.getsize(files['adapter']) < osp.getsize(files['full']) / 3
    full = _test(tools, files, files['full'], 'w_full', out='full.pkl')
    adapter = _test(tools, files, files['adapter'], 'w_adapter', out='adapter.pkl')
    assert adapter == full and 'accuracy/top1' in full
    scores = []
    for name in ('full.pkl', 'adapter.pkl'):
        with open(files['root'] / name, 'rb') as f:
            scores.append(torch.stack([p['pred_score'] for p in pickle.load(f)]))
    assert torch.equal(scores[0], scores[1])  # the same model, not only the same accuracy
    # fold_peft: adapter + base -> the plain model, which tests the same
    fold = _load_tool(tools, 'model_converters/fold_peft.py')
    folded = str(files['root'] / 'folded.pth')
    fold.main([files['cfg'], files['adapter'], folded])
    test = _load_tool(tools, 'test.py')
    plain = test.main([folded[:-4] + '.py', folded, '--work-dir', str(files['root'] / 'w_fold')])
    assert plain == full


def test_test_tool_refuses_adapter_only_checkpoint_with_another_base_or_none(
        tools, adapter_files, data_root, monkeypatch, tmp_path):
    monkeypatch.chdir(data_root)
    files = adapter_files
    other = tmp_path / 'other.pth'
    state = torch.load(files['base'], weights_only=True)['state_dict']
    torch.save({'state_dict': {k: v.flip(-1) for k, v in state.items()}}, other)
    with pytest.raises(SystemExit, match=rf'error: {re.escape(files["adapter"])} is an '
                       rf'adapter-only checkpoint trained on the base model\.backbone\.init_cfg'
                       rf'\.checkpoint={re.escape(files["base"])} .*but this config loads '
                       rf'model\.backbone\.init_cfg\.checkpoint={re.escape(str(other))}, whose '
                       r'tensors differ .*Point init_cfg\.checkpoint at the base'):
        _test(tools, files, files['adapter'], 'w_other',
              f'model.backbone.init_cfg.checkpoint={other}')
    with pytest.raises(SystemExit, match=rf'error: {re.escape(files["adapter"])} is an '
                       r'adapter-only checkpoint .*but this ImageClassifier has none\. It was '
                       rf'trained on model\.backbone\.init_cfg\.checkpoint='
                       rf'{re.escape(files["base"])}: set that init_cfg'):
        _test(tools, files, files['adapter'], 'w_none', 'model.backbone.init_cfg=None')
