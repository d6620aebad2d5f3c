"""Two CPU processes (gloo): ranks whose sampler generators are seeded differently
still run the same stitch every iteration (rank 0 draws, the others receive it) and
end with the same scores (the SNIP score is averaged over ranks before the update)."""
import os.path as osp
import sys

import torch

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))


def test_two_ranks_agree_on_the_stitch(tmp_path, subprocess_tools):
    out = str(tmp_path / 'ranks')
    env = dict(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(subprocess_tools.free_port()),
               WORLD_SIZE='2', REPO_ROOT=ROOT)
    procs = [subprocess_tools.start([sys.executable, osp.join(HERE, 'ddp_worker.py'),
                                     str(rank), out], ROOT, RANK=str(rank), **env)
             for rank in (0, 1)]
    for proc in procs:
        subprocess_tools.check(subprocess_tools.finish(proc, timeout=300))
    r0, r1 = (torch.load(f'{out}.{r}', weights_only=False) for r in (0, 1))
    assert r0['chosen'] == r1['chosen']
    # without the broadcast the ranks would have drawn different stitches
    assert r0['local'] != r1['local'] and r0['chosen'][:10] == r0['local'][:10]
    assert r0['scores'] == r1['scores']
    # each score is built from the mean over ranks (1 t and 2 t -> 1.5 t): the first
    # update of the first stitch sets it to 1.5 * (its first iteration + 1)
    first = r0['chosen'][0]
    assert r0['scores'][first] != 0
    assert r0['chosen'].count(first) >= 1
    once = [s for s in set(r0['chosen']) if r0['chosen'].count(s) == 1]
    for s in once:
        assert r0['scores'][s] == 1.5 * (r0['chosen'].index(s) + 1)
