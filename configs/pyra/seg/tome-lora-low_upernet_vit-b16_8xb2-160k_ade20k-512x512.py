# ToMe + LoRA baseline for the PYRA ADE20K config (same schedule, no re-activation).
_base_ = ['./pyra-lora-low_upernet_vit-b16_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(merge_mode='tome'))
