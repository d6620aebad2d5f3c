# The tiny run plus the test-only hooks of tests/test_tools/mmadapt_test_hooks.py
# (that folder must be on PYTHONPATH): InterruptHook kills the process after a
# checkpoint when switched on (e.g. --cfg-options custom_hooks.1.after_iter=4),
# DumpParamsHook writes every rank's final parameters to the work dir.
_base_ = ['./pyra-vit-tiny-p8_fcn_8iter_embedded-seg-64px.py']
custom_imports = dict(imports=['projects', 'mmadapt_test_hooks'], allow_failed_imports=False)
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='InterruptHook'),
    dict(type='DumpParamsHook'),
]
