"""``tools/dist_train.sh`` with two CPU processes (gloo), SyncBN in the config."""
import os
import os.path as osp

import torch


def test_dist_train_two_cpu_processes(tools, data_root):
    work_dir = osp.join(data_root, 'work_seg_ddp')
    result = tools.run(
        ['bash', osp.join(tools.TOOLS, 'dist_train.sh'), tools.SEG_TESTHOOKS_CFG, '2',
         '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_iters=4',
         'train_cfg.val_interval=4', 'default_hooks.checkpoint.interval=4',
         'model.decode_head.norm_cfg.type=SyncBN'],
        data_root, timeout=400, PORT=str(tools.free_port()))
    log = tools.check(result)
    assert log.count('SyncBN norm config(s) replaced by BN') == 1  # rank 0 prints
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert 'Distributed training is not used' not in log

    # one checkpoint, written by rank 0, holding both ranks' RNG states
    ckpts = sorted(f for f in os.listdir(work_dir) if f.endswith('.pth')
                   and f.startswith('iter_'))
    assert ckpts == ['iter_4.pth']
    ckpt = tools.load_ckpt(osp.join(work_dir, 'iter_4.pth'))
    assert ckpt['rng_state']['world_size'] == 2
    assert len(ckpt['rng_state']['states']) == 2
    assert ckpt['meta']['iter'] == 4

    # both ranks trained to the end, in a 2-process group, with identical parameters
    dumps = [tools.load_ckpt(osp.join(work_dir, f'params_rank{r}.pth')) for r in (0, 1)]
    assert [(d['rank'], d['world_size']) for d in dumps] == [(0, 2), (1, 2)]
    params0, params1 = dumps[0]['params'], dumps[1]['params']
    assert params0.keys() == params1.keys() and len(params0) > 0
    for key, value in params0.items():
        assert torch.equal(value, params1[key]), key
        assert torch.equal(value, ckpt['state_dict'][key]), key
    # the per-rank data differed (DistributedSampler): BN running stats are per rank
    # buffers in the checkpoint, so training really saw data
    assert any('running_mean' in k for k in ckpt['state_dict'])
