# The PYRA ViT-B/16 backbone of the 512x512 segmentation configs: vit-b16_seg-512.py
# with PYRA merging ('low' schedule rescaled to 1025 tokens), merged tokens unmerged at
# every tap. Leaves choose merge_mode / merge_schedule.
_base_ = ['./vit-b16_seg-512.py']
model = dict(backbone=dict(type='PYRAViT', merge_mode='pyra', merge_schedule='low'))
