"""Runner hooks; importing this package registers them in mmengine's HOOKS registry,
which the mmpretrain and mmseg runners both search."""
from .adapter_checkpoint_hook import AdapterCheckpointHook
from .bn_calibration_hook import FreshBNCalibrationHook
from .linear_probe_init_hook import LinearProbeInitHook
from .rng_state_hook import RNGStateHook, get_rng_state, set_rng_state

__all__ = ['AdapterCheckpointHook', 'FreshBNCalibrationHook', 'LinearProbeInitHook', 'RNGStateHook', 'get_rng_state',
           'set_rng_state']
