"""The small library behind ``tools/analysis``: every script is a thin entry point over

- :mod:`.loading` -- config (with ``--cfg-options``), model in its registry scope with
  random / initial / trained weights, input images (real test images by default);
- :mod:`.benchmark` -- interleaved timing (median of round-robin repeats);
- :mod:`.memory` and :mod:`.worker` -- a process' own peak memory (``VmHWM``), measured
  in a fresh child process per measurement;
- :mod:`.macs` -- multiply-adds (the one place the tools' cost model is chosen);
- :mod:`.protocol` -- the benchmark protocol (batches, autocast, strongest baseline);
- :mod:`.report` -- the JSON schema every tool writes and the table printer;
- :mod:`.progress` -- progress bars of long loops (on a terminal only).

The training-cost benchmark prepares method-specific state (SPT's allocation, ESTA's
stitch sampling), so it lives in ``projects/combos/train_cost.py``.
"""
