"""One rank of test_esta_ddp.py (started twice as a plain script)."""
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, os.environ['REPO_ROOT'])


def main(rank: int, out: str) -> None:
    dist.init_process_group('gloo', rank=rank, world_size=2)
    from projects.esta.hooks import ESTASamplingHook
    from projects.esta.sampler import StitchSampler, mean_over_ranks
    hook = ESTASamplingHook()
    hook.sampler = StitchSampler(np.arange(20.0), num_intervals=4, seed=100 + rank)
    hook.warmup_iters = 10
    own = StitchSampler(np.arange(20.0), num_intervals=4, seed=100 + rank)
    chosen, local = [], []
    for it in range(40):
        stitch = hook.choose(it)
        local.append(own.sample(uniform=it < 10))
        chosen.append(stitch)
        hook.sampler.update(stitch, mean_over_ranks(float(rank + 1) * (it + 1)))
    torch.save(dict(chosen=chosen, local=local, scores=hook.sampler.scores.tolist()),
               f'{out}.{rank}')
    dist.destroy_process_group()


if __name__ == '__main__':
    main(int(sys.argv[1]), sys.argv[2])
