# The category-level twin of prolab_ade20k_150.py: the same network, data and schedule with one-hot
# cross-entropy supervision (the paper's baseline, 48.4 mIoU on ADE20K).
#   torchrun --nproc_per_node 8 -m prolab.interop.mmseg.train configs/mmseg/category_ade20k_150.py --launcher pytorch
_base_ = ["./prolab_ade20k_150.py"]

model = dict(decode_head=dict(mode="category", property_space=None),
             auxiliary_head=dict(mode="category", property_space=None))
