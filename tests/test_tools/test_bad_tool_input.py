"""Bad input to the tools: truncated checkpoints for ``--resume`` / ``test.py``, a model
without LoRA for ``fold_peft.py``, a config of another library. Each stops with a
message naming the file and the fix, before a runner or model is built."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from projects.core.engine.model_builder import build_model_from_cfg, check_scope


def _load_tool(tools, relpath: str):
    name = 'mmadapt_bad_input_' + relpath.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, osp.join(tools.TOOLS, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _truncated_checkpoint(path) -> str:
    torch.save({'state_dict': {'w': torch.zeros(64, 64)}, 'meta': {}}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # a save or copy that was cut off
    return str(path)


def test_resume_from_truncated_latest_checkpoint(tools, tmp_path):
    """``--resume``: the checkpoint named by work_dir/last_checkpoint is cut off."""
    train = _load_tool(tools, 'train.py')
    (tmp_path / 'epoch_1.pth').write_bytes(b'')  # only its name matters here
    latest = _truncated_checkpoint(tmp_path / 'epoch_2.pth')
    (tmp_path / 'last_checkpoint').write_text(latest)
    args = train.parse_args([tools.CLS_CFG, '--work-dir', str(tmp_path), '--resume'])
    with pytest.raises(SystemExit, match=r'--resume: the latest checkpoint \(named by '
                       r'.*last_checkpoint\) .*epoch_2\.pth cannot be loaded: its zip directory '
                       r'is unreadable .*truncated or damaged\. Delete it and write the path of '
                       r'the previous checkpoint into .*last_checkpoint'):
        train.setup_cfg(args)


def test_resume_from_truncated_given_checkpoint(tools, tmp_path):
    train = _load_tool(tools, 'train.py')
    cut = _truncated_checkpoint(tmp_path / 'iter_4.pth')
    args = train.parse_args([tools.SEG_CFG, '--work-dir', str(tmp_path), '--resume', cut])
    with pytest.raises(SystemExit, match=r'--resume: checkpoint .*iter_4\.pth cannot be loaded: '
                       r'.*truncated or damaged\. Delete it and pass the previous checkpoint'):
        train.setup_cfg(args)
    (tmp_path / 'empty.pth').write_bytes(b'')
    args = train.parse_args([tools.SEG_CFG, '--resume', str(tmp_path / 'empty.pth')])
    with pytest.raises(SystemExit, match=r'empty\.pth cannot be loaded: the file is empty'):
        train.setup_cfg(args)


def test_test_tool_refuses_truncated_checkpoint(tools, tmp_path):
    test = _load_tool(tools, 'test.py')
    cut = _truncated_checkpoint(tmp_path / 'epoch_3.pth')
    with pytest.raises(SystemExit, match=r'checkpoint .*epoch_3\.pth cannot be loaded: .*'
                       r'truncated or damaged\. Copy or save it again'):
        test.setup_cfg(test.parse_args([tools.CLS_CFG, cut, '--work-dir', str(tmp_path)]))


def test_fold_peft_on_a_model_without_lora(tools, tmp_path):
    """Nothing to fold: the tool says the checkpoint already is the plain model and
    how to test it, without a traceback."""
    fold = _load_tool(tools, 'model_converters/fold_peft.py')
    model = build_model_from_cfg(Config.fromfile(tools.CLS_CFG))
    ckpt = tmp_path / 'plain.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    with pytest.raises(SystemExit, match=r'error: .*pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-'
                       r'mnist-56px\.py: fold_lora_state_dict: the model has no LoRA layer to '
                       r'fold \(it was built without lora_cfg\)\. So .*plain\.pth already is a '
                       r'plain model: .*python tools/test\.py '):
        fold.main([tools.CLS_CFG, str(ckpt), str(tmp_path / 'folded.pth')])
    assert not (tmp_path / 'folded.pth').exists()


def test_config_of_another_library_given_to_a_tool(tools, tmp_path):
    """An mmdet config to fold_peft.py (MMAdapt tools build mmpretrain / mmseg
    models), and a segmentation config where only classification is built."""
    det = tmp_path / 'retinanet_r18.py'
    det.write_text("default_scope = 'mmdet'\nmodel = dict(type='RetinaNet', "
                   "backbone=dict(type='ResNet', depth=18))\n")
    fold = _load_tool(tools, 'model_converters/fold_peft.py')
    with pytest.raises(ValueError, match=r"retinanet_r18\.py is a config with "
                       r"default_scope='mmdet', but this tool builds mmpretrain "
                       r'\(classification\) or mmseg \(segmentation\) models\. Give it a config '
                       r'of that library'):
        fold.main([str(det), str(tmp_path / 'x.pth'), str(tmp_path / 'folded.pth')])
    with pytest.raises(ValueError, match=r'pyra-vit-tiny-p8_fcn_8iter_embedded-seg-64px\.py is '
                       r'an mmseg \(segmentation\) config, but this tool builds mmpretrain '
                       r'\(classification\) models'):
        check_scope(Config.fromfile(tools.SEG_CFG), scopes=('mmpretrain', ))
    assert check_scope(Config.fromfile(tools.CLS_CFG), scopes=('mmpretrain', )) == 'mmpretrain'
