"""A ``load_from`` checkpoint that does not fit the model is refused
(``projects/core/runtime/strict_load.py``; issue 25, part 1).

Before, mmengine loaded it with ``strict=False``: a warning, and ``tools/test.py``
printed a number for a partly random model with exit code 0. Cases:

* (a) a LoRA-trained checkpoint (the tiny config, 1 epoch, ``lora_cfg.rank=4``)
  tested under the plain config: its LoRA tensors are unexpected;
* (b) a wider model's checkpoint (embed_dims 48) under the 32-wide config: every
  tensor shape-mismatched;
* missing keys: the LoRA checkpoint without its head, under the LoRA config;
* ``--partial-load`` / ``load_from_partial=True``: loads what fits, one summary line;
* ``Runner.from_cfg`` with ``load_from`` (mmseg's / mmpretrain's tools, ``mim``).

One 1-epoch training run, shared by the module; the tool runs go two at a time.
"""
import importlib.util
import os.path as osp
import re
from collections import OrderedDict

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from projects.core.engine.model_builder import build_model_from_cfg
from projects.core.runtime import strict_load
from projects.core.runtime.strict_load import CheckpointMismatchError

LORA = 'model.backbone.lora_cfg.rank=4'
LORA_KEY = 'backbone.blocks.0.attn.qkv.lora_A.q'  # a tensor only the LoRA model has


@pytest.fixture(scope='module')
def runs(data_root, tools, tmp_path_factory):
    """The checkpoints and the ``tools/test.py`` runs on them."""
    root = str(tmp_path_factory.mktemp('strict_load'))
    out = dict(root=root, lora_work=osp.join(root, 'lora'))
    # (b) a 48-wide model of the same config, as its own run would have saved it
    cfg = Config.fromfile(tools.CLS_CFG)
    cfg.model.backbone.arch.embed_dims = 48
    cfg.model.head.in_channels = 48
    out['wide'] = osp.join(root, 'wide48.pth')
    torch.save(dict(meta=dict(experiment_name='tiny-48-wide'),
                    state_dict=build_model_from_cfg(cfg).state_dict()), out['wide'])

    def test_cmd(name, *extra):
        return tools.python_tool('test.py', tools.CLS_CFG, out[name], '--work-dir',
                                 osp.join(root, f'test_{name}_{len(extra)}'), *extra)

    train = tools.start(tools.python_tool(
        'train.py', tools.CLS_CFG, '--work-dir', out['lora_work'], '--cfg-options', LORA,
        'train_cfg.max_epochs=1'), data_root)
    wide = tools.start(test_cmd('wide'), data_root)
    out['train_result'] = tools.finish(train)
    out['wide_result'] = tools.finish(wide)
    out['lora'] = osp.join(out['lora_work'], 'epoch_1.pth')
    if osp.exists(out['lora']):
        procs = {'lora_result': tools.start(test_cmd('lora'), data_root),
                 'partial_result': tools.start(test_cmd('lora', '--partial-load'),
                                               data_root)}
        out.update({name: tools.finish(proc) for name, proc in procs.items()})
    return out


def _lora_ckpt(runs, tools):
    tools.check(runs['train_result'])
    return runs['lora']


def test_lora_checkpoint_under_the_plain_config_is_refused(runs, tools):
    """(a): before, rc 0 and an accuracy; the 12 LoRA tensors were dropped."""
    ckpt = _lora_ckpt(runs, tools)
    log = tools.check(runs['lora_result'], 1)
    assert f'error: load_from checkpoint {ckpt} does not fit the ImageClassifier' in log, \
        log[-3000:]
    assert '12 unexpected (checkpoint tensors this model does not have): ' in log
    assert f'{LORA_KEY} [4, 32]' in log
    assert 'The checkpoint was written by the run pyra-vit-tiny-p8' in log
    assert "its config is in the checkpoint's meta['cfg']" in log
    assert '--partial-load' in log and 'load_from_partial=True' in log
    assert 'accuracy/top1' not in log


def test_wider_checkpoint_is_refused(runs, tools):
    """(b): before, every tensor shape-mismatched, the model random, rc 0."""
    log = tools.check(runs['wide_result'], 1)
    assert f'error: load_from checkpoint {runs["wide"]} does not fit' in log, log[-3000:]
    # only 3 tensors keep their shape at 48 wide: head.fc.bias and the two fc1 biases
    assert '(3 of its 32 tensors fit)' in log
    assert '29 shape-mismatched (checkpoint shape, model shape): backbone.cls_token ' \
        '[1, 1, 48] (model: [1, 1, 32]); backbone.pos_embed [1, 50, 48] (model: ' \
        '[1, 50, 32])' in log
    assert 'The checkpoint was written by the run tiny-48-wide.' in log
    assert 'accuracy/top1' not in log


def test_partial_load_loads_and_summarises(runs, tools):
    ckpt = _lora_ckpt(runs, tools)
    log = tools.check(runs['partial_result'])
    assert (f'load_from_partial: loaded 32 of 32 model tensors from {ckpt}; not loaded: '
            f'12 checkpoint tensors unused (e.g. backbone.blocks.0.attn.qkv.lora_A.k') in log, \
        log[-3000:]
    assert 'accuracy/top1' in log


# ------------------------------------------------ Runner.from_cfg (mmseg / mmpretrain tools)
def _runner(tools, tmp_path, ckpt, lora=False, **cfg_options) -> Runner:
    """The runner mmseg's / mmpretrain's tools/test.py build: ``load_from`` set
    directly, ``Runner.from_cfg``; ``load_or_resume`` is the load runner.test() does."""
    cfg = Config.fromfile(tools.CLS_CFG)
    if lora:
        cfg.model.backbone.lora_cfg = dict(rank=4)
    cfg.merge_from_dict(dict(cfg_options, load_from=ckpt, launcher='none',
                             work_dir=str(tmp_path / 'work')))
    return Runner.from_cfg(cfg)


def _state(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def test_runner_from_cfg_refuses_and_loads_what_fits(runs, tools, tmp_path):
    ckpt = _lora_ckpt(runs, tools)
    with pytest.raises(CheckpointMismatchError, match=rf'(?s)load_from checkpoint '
                       rf'{re.escape(ckpt)} does not fit .*unexpected.*{LORA_KEY} \[4, 32\]'):
        _runner(tools, tmp_path, ckpt).load_or_resume()
    saved = _state(ckpt)['state_dict']
    runner = _runner(tools, tmp_path, ckpt, load_from_partial=True)
    runner.load_or_resume()
    for key, value in runner.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # the config it was trained with: loads entirely, nothing refused
    runner = _runner(tools, tmp_path, ckpt, lora=True)
    runner.load_or_resume()
    assert runner.model.state_dict().keys() == saved.keys()
    assert all(torch.equal(v, saved[k]) for k, v in runner.model.state_dict().items())


def test_missing_keys_are_refused(runs, tools, tmp_path):
    ckpt = _state(_lora_ckpt(runs, tools))
    ckpt['state_dict'] = OrderedDict((k, v) for k, v in ckpt['state_dict'].items()
                                     if not k.startswith('head.'))
    headless = str(tmp_path / 'headless.pth')
    torch.save(ckpt, headless)
    with pytest.raises(CheckpointMismatchError,
                       match=rf'(?s){re.escape(headless)} does not fit .*\(42 of '
                       r'its 44 tensors fit\).*2 missing \(model tensors the checkpoint does '
                       r'not have\): head\.fc\.weight \[10, 32\]; head\.fc\.bias \[10\]'):
        _runner(tools, tmp_path, headless, lora=True).load_or_resume()
    # a plain model's weights under the LoRA config: the missing keys are the LoRA
    # tensors, which a pretrained backbone may lack (init_cfg), a load_from may not
    saved = _state(runs['lora'])['state_dict']
    ckpt['state_dict'] = OrderedDict((k, v) for k, v in saved.items() if '.lora_' not in k)
    plain = str(tmp_path / 'plain.pth')
    torch.save(ckpt, plain)
    with pytest.raises(CheckpointMismatchError,
                       match=rf'(?s){re.escape(plain)} does not fit .*12 missing .*'
                       rf'{LORA_KEY} \[4, 32\].*All missing keys are parameters this config '
                       r"adds .*init_cfg pretrained checkpoint"):
        _runner(tools, tmp_path, plain, lora=True).load_or_resume()


def test_module_prefix_is_revised_as_mmengine_does(runs, tools, tmp_path):
    """A raw DDP state dict (``module.`` keys) fits after mmengine's ``revise_keys``."""
    ckpt = _state(_lora_ckpt(runs, tools))
    wrapped = str(tmp_path / 'ddp.pth')
    torch.save(dict(state_dict=OrderedDict(
        (f'module.{k}', v) for k, v in ckpt['state_dict'].items())), wrapped)
    runner = _runner(tools, tmp_path, wrapped, lora=True)
    runner.load_or_resume()
    assert torch.equal(runner.model.state_dict()[LORA_KEY], ckpt['state_dict'][LORA_KEY])


def test_resume_and_direct_loads_keep_mmengine_behaviour(runs, tools, tmp_path, monkeypatch):
    """``resume`` goes through mmengine's own (non-strict) load; so does a direct
    ``runner.load_checkpoint`` call (tools that load weights themselves)."""
    ckpt = _lora_ckpt(runs, tools)
    assert strict_load.is_patched() and not strict_load.patch_runner_load()
    runner = _runner(tools, tmp_path, ckpt, resume=True)
    resumed = []
    monkeypatch.setattr(runner, 'resume', resumed.append)
    runner.load_or_resume()
    assert resumed == [ckpt]
    runner = _runner(tools, tmp_path, None)
    runner.load_checkpoint(ckpt)  # mmengine logs the unexpected keys, loads the rest
    saved = _state(ckpt)['state_dict']
    assert torch.equal(runner.model.state_dict()['head.fc.weight'], saved['head.fc.weight'])


def test_partial_load_with_resume_is_refused(tools):
    spec = importlib.util.spec_from_file_location('mmadapt_strict_train',
                                                  osp.join(tools.TOOLS, 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    args = train.parse_args([tools.CLS_CFG, '--resume', '--partial-load'])
    with pytest.raises(SystemExit, match='--partial-load applies to load_from'):
        train.setup_cfg(args)
    cfg = train.setup_cfg(train.parse_args([tools.CLS_CFG, '--partial-load']))
    assert cfg.load_from_partial is True
