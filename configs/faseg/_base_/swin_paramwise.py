# Swin backbones in the Mask2Former recipe: patch-embedding / block / patch-merging
# norms and the position tables get lr x0.1 and no weight decay. Leaves add these keys
# with optim_wrapper=dict(paramwise_cfg=dict(custom_keys={{_base_.swin_custom_keys}})).
# The block keys cover depths [2, 2, 18, 2] (Swin-B/L); for Swin-T the extra keys match
# no parameter. (mmengine matches custom keys as substrings; all keys carry the same
# multipliers, so 'blocks.1.norm' also matching 'blocks.1x.norm' is harmless.)
swin_norm_multi = dict(lr_mult=0.1, decay_mult=0.0)
swin_custom_keys = {
    'backbone.patch_embed.norm': swin_norm_multi,
    'backbone.norm': swin_norm_multi,
    'absolute_pos_embed': swin_norm_multi,
    'relative_position_bias_table': swin_norm_multi,
}
swin_custom_keys.update({
    f'backbone.stages.{stage}.blocks.{block}.norm': swin_norm_multi
    for stage, num_blocks in enumerate([2, 2, 18, 2]) for block in range(num_blocks)
})
swin_custom_keys.update({
    f'backbone.stages.{stage}.downsample.norm': swin_norm_multi for stage in range(3)
})
