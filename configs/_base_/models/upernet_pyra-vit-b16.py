# UPerNet on a PYRA ViT-B/16: upernet_vit-b16.py with PYRA merging ('low' schedule),
# merged tokens unmerged to the full 1/16 grid at each of the four taps. Leaves choose
# merge_mode / merge_schedule.
_base_ = ['./upernet_vit-b16.py']
model = dict(backbone=dict(type='PYRAViT', merge_mode='pyra', merge_schedule='low'))
