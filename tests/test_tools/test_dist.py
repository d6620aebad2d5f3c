"""``tools/dist_train.sh`` with two CPU processes (gloo).

* a 4-iteration run of the tiny segmentation config with SyncBN requested: one
  checkpoint, both ranks train in one process group and end with identical
  parameters;
* a 2-process resume: 8 iterations uninterrupted vs. killed after the iteration-4
  checkpoint and resumed with ``--resume``; every rank restores its own RNG states;
* multi-node: the 4-iteration run as 2 "nodes" x 1 process on localhost (two
  ``dist_train.sh`` with NNODES=2, NODE_RANK=0/1, MASTER_ADDR, PORT), which must equal
  the 2-process single-node run bit for bit; then ``dist_test.sh`` on 2 nodes.
"""
import os
import os.path as osp
import pickle

import pytest
import torch


@pytest.fixture(scope='module')
def ddp_runs(tools, data_root):
    script = ['bash', osp.join(tools.TOOLS, 'dist_train.sh'), tools.SEG_TESTHOOKS_CFG, '2']
    dirs = {name: osp.join(data_root, f'work_ddp_{name}')
            for name in ('short', 'full', 'cut')}
    extra = {
        'short': ['--cfg-options', 'train_cfg.max_iters=4',
                  'model.decode_head.norm_cfg.type=SyncBN'],
        'full': [],
        'cut': ['--cfg-options', 'custom_hooks.1.after_iter=4'],
    }
    procs = {name: tools.start(script + ['--work-dir', dirs[name]] + extra[name],
                               data_root, PORT=str(tools.free_port()))
             for name in dirs}
    # the 'short' run again, as two nodes of one process each sharing the work dir
    dirs['nodes'] = osp.join(data_root, 'work_ddp_nodes')
    procs.update(_two_nodes(tools, data_root, [
        'bash', osp.join(tools.TOOLS, 'dist_train.sh'), tools.SEG_TESTHOOKS_CFG, '1',
        '--work-dir', dirs['nodes']] + extra['short']))
    results = {name: tools.finish(proc, timeout=400) for name, proc in procs.items()}
    if osp.exists(osp.join(dirs['nodes'], 'iter_4.pth')):
        procs = _two_nodes(tools, data_root, [
            'bash', osp.join(tools.TOOLS, 'dist_test.sh'), tools.SEG_TESTHOOKS_CFG,
            osp.join(dirs['nodes'], 'iter_4.pth'), '1', '--work-dir',
            osp.join(data_root, 'work_ddp_nodes_test'), '--out',
            osp.join(data_root, 'preds_nodes.pkl')])
        results.update({f'test_{name}': tools.finish(proc, timeout=400)
                        for name, proc in procs.items()})
    if osp.exists(osp.join(dirs['cut'], 'iter_4.pth')):
        results['cut_files'] = sorted(os.listdir(dirs['cut']))
        results['resume'] = tools.run(script + ['--work-dir', dirs['cut'], '--resume'],
                                      data_root, timeout=400,
                                      PORT=str(tools.free_port()))
    return dirs, results


def _two_nodes(tools, cwd, cmd):
    """Start ``cmd`` twice, as node 0 and node 1 of a 2-node job on localhost."""
    nodes = dict(NNODES='2', MASTER_ADDR='127.0.0.1', PORT=str(tools.free_port()))
    return {f'node{rank}': tools.start(cmd, cwd, NODE_RANK=str(rank), **nodes)
            for rank in (0, 1)}


def _params(tools, work_dir, rank, node=None):
    """Parameters rank ``rank`` of a 2-process run dumped; ``node``: the (node rank,
    local rank) torchrun must have given it."""
    dump = tools.load_ckpt(osp.join(work_dir, f'params_rank{rank}.pth'))
    assert (dump['rank'], dump['world_size']) == (rank, 2)
    if node is not None:
        assert dump['node'] == node
    return dump['params']


def _assert_same(a, b):
    assert a.keys() == b.keys() and len(a) > 0
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_dist_train_two_cpu_processes(ddp_runs, tools):
    dirs, results = ddp_runs
    work_dir = dirs['short']
    log = tools.check(results['short'])
    assert log.count('SyncBN norm config(s) replaced by BN') == 1  # rank 0 prints
    assert 'Distributed training: True' in log and 'GPU number: 2' in log

    # one checkpoint, written by rank 0, holding both ranks' RNG states
    ckpts = sorted(f for f in os.listdir(work_dir) if f.startswith('iter_'))
    assert ckpts == ['iter_4.pth']
    ckpt = tools.load_ckpt(osp.join(work_dir, 'iter_4.pth'))
    assert ckpt['meta']['iter'] == 4
    assert ckpt['rng_state']['world_size'] == 2
    assert len(ckpt['rng_state']['states']) == 2

    # both ranks trained to the end in a 2-process group, with identical parameters
    params0, params1 = _params(tools, work_dir, 0, (0, 0)), _params(tools, work_dir, 1, (0, 1))
    _assert_same(params0, params1)
    _assert_same(params0, {k: ckpt['state_dict'][k] for k in params0})


def test_dist_resume_restores_every_rank(ddp_runs, tools):
    dirs, results = ddp_runs
    tools.check(results['full'])
    assert results['cut'].returncode != 0  # torchrun reports the killed workers
    assert 'resume' in results, 'the interrupted run left no checkpoint'
    assert [f for f in results['cut_files'] if f.endswith('.pth')] == ['iter_4.pth']
    log = tools.check(results['resume'])
    assert 'resumed epoch: 0, iter: 4' in log
    states = tools.load_ckpt(osp.join(dirs['cut'], 'iter_4.pth'))['rng_state']['states']
    # the ranks' augmentation streams really differ, so a per-rank restore matters
    assert states[0]['numpy']['pos'] != states[1]['numpy']['pos'] or \
        not torch.equal(states[0]['numpy']['keys'], states[1]['numpy']['keys'])
    full = tools.load_ckpt(osp.join(dirs['full'], 'iter_8.pth'))['state_dict']
    resumed = tools.load_ckpt(osp.join(dirs['cut'], 'iter_8.pth'))['state_dict']
    _assert_same(full, resumed)  # BN running stats of rank 0 included
    for rank in (0, 1):
        _assert_same(_params(tools, dirs['full'], rank), _params(tools, dirs['cut'], rank))


def test_dist_train_two_nodes_equals_single_node(ddp_runs, tools):
    dirs, results = ddp_runs
    log = tools.check(results['node0'])
    tools.check(results['node1'])
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    # one checkpoint, written once (by global rank 0 on node 0) into the shared dir
    ckpts = sorted(f for f in os.listdir(dirs['nodes']) if f.startswith('iter_'))
    assert ckpts == ['iter_4.pth']
    # one process per node: global rank r is local rank 0 of node r
    params0 = _params(tools, dirs['nodes'], 0, (0, 0))
    params1 = _params(tools, dirs['nodes'], 1, (1, 0))
    _assert_same(params0, params1)
    # the same seed on 2 nodes x 1 process and 1 node x 2 processes: the same ranks,
    # data shards and all-reduces, so the same weights bit for bit
    nodes = tools.load_ckpt(osp.join(dirs['nodes'], 'iter_4.pth'))
    single = tools.load_ckpt(osp.join(dirs['short'], 'iter_4.pth'))
    _assert_same(single['state_dict'], nodes['state_dict'])
    _assert_same(_params(tools, dirs['short'], 0), params0)
    assert nodes['rng_state']['world_size'] == 2


def test_dist_test_two_nodes(ddp_runs, tools, data_root):
    _, results = ddp_runs
    assert 'test_node0' in results, 'the 2-node training run left no checkpoint'
    log = tools.check(results['test_node0'])
    tools.check(results['test_node1'])
    assert 'mIoU' in log, log[-3000:]
    with open(osp.join(data_root, 'preds_nodes.pkl'), 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 2  # both val images, gathered from the two nodes
