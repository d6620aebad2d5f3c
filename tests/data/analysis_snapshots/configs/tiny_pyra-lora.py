# Snapshot input of the analysis tools: tiny_lora.py with PYRA merging (10 then 6 tokens).
_base_ = ['./tiny_lora.py']
model = dict(backbone=dict(merge_mode='pyra', merge_schedule=[10, 6]))
