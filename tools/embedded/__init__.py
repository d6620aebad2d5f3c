"""Parts of README command (1), ``tools/run_embedded_default.py``: the method table and
plug-in loader, a quiet console with a progress bar, the seed aggregation, the table and
the speed plot. The linear probe and the LP-FT head start live in ``projects/core``
(``linear_probe.py``, ``hooks/linear_probe_init_hook.py``) because configs use them."""
