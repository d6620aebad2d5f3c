"""Runtime compatibility patches for the pinned stack. Importing this package (as
``import projects`` does first) has these import-time effects, and no other module of
MMAdapt patches anything at import:

1. :mod:`.compat` -- ``torch.load`` allows exactly the globals mmengine's checkpoints
   pickle (resume under torch >= 2.6); CPU runs get a gloo process group and SyncBN
   falls back to BN (see its docstring for the full list).
2. :mod:`.runner_compat` -- ``Runner.from_cfg`` applies (1)'s CPU fixes to every runner
   built from a config: mmseg's / mmpretrain's tools, ``mim train/test``, scripts.
3. :mod:`.atomic_checkpoints` -- mmengine's checkpoint writes (``save_checkpoint`` and
   ``last_checkpoint``) go through a temporary file and an atomic rename.
4. :mod:`.strict_load` -- ``Runner.load_or_resume`` / ``Runner.load_checkpoint``: a
   ``load_from`` checkpoint (not ``resume``) with missing, unexpected or shape-mismatched
   keys is refused, naming the file, the keys and the fix, unless the config sets
   ``load_from_partial=True`` (then one summary line is logged).
"""
from . import compat  # noqa: F401  (must run before any checkpoint is loaded)
from . import runner_compat  # noqa: F401
from . import atomic_checkpoints  # noqa: F401
from . import strict_load  # noqa: F401
