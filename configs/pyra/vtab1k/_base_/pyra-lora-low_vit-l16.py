# PYRA (ToMe + parallel yielding re-activation) + LoRA, 'low' compression schedule.
_base_ = ['./lora_vit-l16.py']
model = dict(backbone=dict(merge_mode='pyra', merge_schedule='low'))
