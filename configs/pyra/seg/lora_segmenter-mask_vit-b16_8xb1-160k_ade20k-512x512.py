# LoRA-only baseline (no token merging) for the PYRA Segmenter ADE20K config.
_base_ = ['./pyra-lora-low_segmenter-mask_vit-b16_8xb1-160k_ade20k-512x512.py']
model = dict(backbone=dict(merge_mode='none', merge_schedule=None))
