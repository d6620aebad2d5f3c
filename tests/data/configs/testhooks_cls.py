# The tiny run plus the test-only hooks of tests/test_tools/mmadapt_test_hooks.py
# (that folder must be on PYTHONPATH): InterruptHook kills the process after a
# checkpoint when switched on (e.g. --cfg-options custom_hooks.1.after_epoch=1),
# DumpParamsHook writes every rank's final parameters to the work dir.
_base_ = ['./pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-mnist-56px.py']
custom_imports = dict(imports=['projects', 'mmadapt_test_hooks'], allow_failed_imports=False)
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='InterruptHook'),
    dict(type='DumpParamsHook'),
]
