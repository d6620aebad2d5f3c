# The PYRA ViT-B/16 backbone of the 512x512 segmentation configs: frozen, LoRA rank 8 on
# q/k/v, PYRA merging with the 'low' schedule rescaled to 1025 tokens, merged tokens
# unmerged at every tap. Head bases (UPerNet, Segmenter) set the taps and the final norm;
# leaves choose merge_mode / merge_schedule.
model = dict(
    backbone=dict(
        type='PYRAViT',
        arch='b',
        img_size=(512, 512),
        patch_size=16,
        out_type='featmap',
        with_cls_token=True,
        drop_path_rate=0.1,
        interpolate_mode='bicubic',
        merge_mode='pyra',
        merge_schedule='low',
        lora_cfg=dict(rank=8, alpha=8, dropout=0.1),
        frozen=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/vit_base_patch16_224.augreg_in21k.pth')))
