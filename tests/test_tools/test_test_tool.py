"""``tools/test.py`` on checkpoints written by ``tools/train.py``."""
import os
import os.path as osp
import pickle


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
