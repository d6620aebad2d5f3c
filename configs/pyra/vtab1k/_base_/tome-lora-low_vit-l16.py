# ToMe token merging + LoRA, 'low' compression schedule.
_base_ = ['./lora_vit-l16.py']
model = dict(backbone=dict(merge_mode='tome', merge_schedule='low'))
