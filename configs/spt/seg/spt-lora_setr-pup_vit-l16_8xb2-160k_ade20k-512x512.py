# SPT-LoRA in a SETR-PUP ViT-L/16 on ADE20K (thesis Table 2.5): trainable parameters
# in the backbone only come from the SPT allocation (structured tuning only, as the
# thesis reports for segmentation), the PUP decoder and auxiliary heads are fully
# trained. No token merging here. The 1M backbone budget is our choice (the thesis
# gives only the 14.6M total including the heads).
_base_ = ['../../pyra/seg/pyra-lora-low_setr-pup_vit-l16_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['projects', 'projects.spt'], allow_failed_imports=False)
runner_type = 'SPTRunner'
model = dict(
    backbone=dict(
        type='SPTPYRAViT',  # the PYRA SETR base, merging switched off
        merge_mode='none',
        merge_schedule=None,
        lora_cfg=None,
        spt_cfg=dict(
            allocation='work_dirs/spt_cache/setr-pup_vit-l16_ade20k_lora-r8_1m.pth',
            budget=1_000_000,
            structured=dict(type='lora', rank=8, scale=1.0, dropout=0.1),
            rule='thesis',
            structured_only=True,
            sensitivity=dict(num_samples=800, batch_size=2, train_mode=False))))
custom_hooks = [dict(type='RNGStateHook'), dict(type='SPTAllocationHook')]
