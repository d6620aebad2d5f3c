"""Save and restore the global RNG streams so a resumed run repeats an uninterrupted one.

mmengine seeds python / numpy / torch once at start-up. After ``resume`` the weights,
optimizer, schedulers and the data order are restored, but the global generators that
dropout, drop-path and the data transforms draw from start again from the seed, so
the resumed run diverges from the uninterrupted one. This hook stores the generator
states in every checkpoint and puts them back when a run resumes.

Where the state is put back matters as much as what is stored:

* ``IterBasedTrainLoop`` replays the already-trained batches through the pipeline
  after the checkpoint is loaded (to advance the sampler), which draws from the
  generators. The states are therefore restored when the replay is over, right
  before the first new batch is fetched.
* ``EpochBasedTrainLoop`` restores them in ``before_train_epoch``, before the
  dataloader iterator of the first resumed epoch is created (which draws a worker
  seed from the torch generator).
* Validation draws from the torch generator too (its dataloader iterator). With
  ``isolate_val=True`` the states are saved in ``before_val`` and put back in
  ``after_val``, so training does not depend on whether or when validation ran --
  which is also what makes a checkpoint written right before a validation resumable
  to the same trajectory.

In distributed runs every rank has its own streams. Checkpoints are written by rank
0 only (``Runner.save_checkpoint`` is ``master_only``), so when a checkpoint is due
the hook gathers all ranks' states right before ``CheckpointHook`` runs and rank 0
stores the list; on resume each rank takes its own entry.

Limits: dataloader workers are seeded by mmengine's ``worker_init_fn`` from the seed
alone, so with ``persistent_workers=True`` in epoch-based training the transforms of
a resumed run differ (iteration-based runs replay the skipped batches through the
same workers and are exact). Epoch-based runs resume exactly from end-of-epoch
checkpoints only (mmengine restarts a partly trained epoch). CUDA generator states
are stored for the current device only.
"""
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS

DATA_BATCH = Optional[Any]

CKPT_KEY = 'rng_state'


def get_rng_state() -> Dict[str, Any]:
    """Current python / numpy / torch (and CUDA) generator states of this process.

    The numpy key array is stored as a tensor so that checkpoints holding it still
    load with ``torch.load(weights_only=True)``.
    """
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)),
                   pos=int(pos), has_gauss=int(has_gauss),
                   cached_gaussian=float(cached_gaussian)),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
    np_state = state['numpy']
    np.random.set_state((np_state['name'], np_state['keys'].numpy().astype(np.uint32),
                         np_state['pos'], np_state['has_gauss'],
                         np_state['cached_gaussian']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'].cpu())


class _RestoreAfterReplay:
    """Iterator proxy: after ``n_replay`` batches, restore the RNG, then step aside."""

    def __init__(self, loop, inner, n_replay: int, state: Dict[str, Any]):
        self._loop = loop
        self._inner = inner
        self._remaining = n_replay
        self._state = state

    def __iter__(self):
        return self

    def __next__(self):
        if self._remaining > 0:
            self._remaining -= 1
            return next(self._inner)
        self._loop.dataloader_iterator = self._inner
        set_rng_state(self._state)
        return next(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Keep the global RNG streams in checkpoints so resumed runs are exact.

    Args:
        isolate_val (bool): Restore the RNG states after each validation so that
            validation does not shift the training streams. Defaults to True.

    Example:
        >>> custom_hooks = [dict(type='RNGStateHook')]
    """

    # LOW (70): in ``after_train_iter`` / ``after_train_epoch`` the DDP gather runs
    # after the logger and the param schedulers and before CheckpointHook (VERY_LOW).
    priority = 'LOW'

    def __init__(self, isolate_val: bool = True) -> None:
        self.isolate_val = isolate_val
        self._gathered: Optional[tuple] = None  # ((epoch, iter), [state per rank])
        self._pending: Optional[Dict[str, Any]] = None
        self._val_state: Optional[Dict[str, Any]] = None

    # --------------------------------------------------------------- saving
    @staticmethod
    def _progress(runner) -> tuple:
        return (runner.epoch, runner.iter)

    @staticmethod
    def _checkpoint_due(runner, by_epoch: bool) -> bool:
        """Whether a CheckpointHook of ``runner`` saves at the current stage."""
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
                continue
            if by_epoch:
                due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_epoch(runner))
            else:
                due = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_iter(runner))
            if due:
                return True
        return False

    def _gather_if_due(self, runner, by_epoch: bool) -> None:
        _, world_size = get_dist_info()
        if world_size > 1 and self._checkpoint_due(runner, by_epoch):
            # Collective: every rank gets here for the same (epoch, iter).
            self._gathered = (self._progress(runner), all_gather_object(get_rng_state()))

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        self._gather_if_due(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._gather_if_due(runner, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Called on rank 0 only.
        rank, world_size = get_dist_info()
        if world_size == 1:
            states = [self._val_state or get_rng_state()]
        elif self._gathered is not None and self._gathered[0] == self._progress(runner):
            states = self._gathered[1]
        else:
            # e.g. a best-checkpoint written during validation: no gather happened.
            runner.logger.warning(
                'RNGStateHook: the RNG states of ranks other than 0 were not gathered '
                'for this checkpoint; a run resumed from it restores rank 0 only.')
            states = [self._val_state or get_rng_state()]
        checkpoint[CKPT_KEY] = dict(world_size=world_size, states=states)

    # -------------------------------------------------------------- restoring
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Also called for ``load_from`` without resume (fine-tuning, testing): the
        # streams then stay as seeded.
        if not getattr(runner, '_resume', False) or CKPT_KEY not in checkpoint:
            return
        saved = checkpoint[CKPT_KEY]
        states: List[Dict[str, Any]] = saved['states']
        rank, world_size = get_dist_info()
        if saved['world_size'] != world_size:
            runner.logger.warning(
                f'RNGStateHook: checkpoint written by {saved["world_size"]} '
                f'process(es), resuming with {world_size}; the run will not repeat '
                'the uninterrupted one exactly.')
        if rank >= len(states):
            runner.logger.warning(f'RNGStateHook: no RNG state for rank {rank} in the '
                                  'checkpoint; this rank keeps its seeded streams.')
            return
        self._pending = states[rank]

    def before_train_epoch(self, runner) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        loop = runner.train_loop
        # IterBasedTrainLoop replays `runner.iter` batches after this stage.
        if hasattr(loop, 'dataloader_iterator') and runner.iter > 0:
            loop.dataloader_iterator = _RestoreAfterReplay(
                loop, loop.dataloader_iterator, runner.iter, state)
        else:
            set_rng_state(state)

    # -------------------------------------------------------------- validation
    def before_val(self, runner) -> None:
        if self.isolate_val:
            self._val_state = get_rng_state()

    def after_val(self, runner) -> None:
        if self._val_state is not None:
            set_rng_state(self._val_state)
            self._val_state = None
