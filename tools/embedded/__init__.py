"""Parts of README command (1), ``tools/run_embedded_default.py``: the method table and
plug-in loader, the linear-probe floor and its LP-FT head initialisation, a quiet
console with a progress bar, the seed aggregation, the table and the speed plot."""
