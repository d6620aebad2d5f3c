"""Changing a config's training length without breaking its learning-rate schedule.

Why: setting ``train_cfg.max_epochs`` alone leaves the schedulers' epoch boundaries
where they were: a longer run sits at the final learning rate after the old end, a
shorter one never reaches its cosine phase. The main job's ``--epochs`` and the
plug-in pipelines (SPViT, ESTA) all shorten or lengthen the shared recipe this way.
"""
from mmengine.config import Config


def set_max_epochs(cfg: Config, epochs: int) -> Config:
    """Set ``cfg.train_cfg.max_epochs`` to ``epochs`` and fit the epoch-based schedulers:

    * longer: the schedulers that ended at the old length end at the new one (warm-up
      keeps its length, the last phase stretches);
    * shorter: every boundary is scaled by ``epochs / old`` and the schedulers step per
      iteration (``convert_to_iter_based``), so a 1-epoch run still warms up and decays.
    """
    if epochs < 1:
        raise ValueError(f'epochs must be >= 1, got {epochs}.')
    old = cfg.train_cfg.get('max_epochs')
    if old is None:
        raise ValueError('set_max_epochs: the config trains by iterations '
                         '(train_cfg has no max_epochs); set train_cfg.max_iters instead.')
    cfg.train_cfg.max_epochs = epochs
    scheds = cfg.get('param_scheduler') or []
    for sched in scheds if isinstance(scheds, list) else [scheds]:
        if not sched.get('by_epoch', True):
            continue
        begin, end = sched.get('begin', 0), sched.get('end', old)
        if epochs >= old:
            sched['end'] = epochs if end >= old else end
        else:
            sched['begin'], sched['end'] = begin * epochs / old, min(end, old) * epochs / old
            sched['convert_to_iter_based'] = True
    return cfg
