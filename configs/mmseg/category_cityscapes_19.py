# The category-level twin of prolab_cityscapes_19.py: the same network, data and schedule with one-hot
# cross-entropy supervision (the paper's baseline, 79.9 mIoU on Cityscapes).
#   torchrun --nproc_per_node 8 -m prolab.interop.mmseg.train configs/mmseg/category_cityscapes_19.py --launcher pytorch
_base_ = ["./prolab_cityscapes_19.py"]

model = dict(decode_head=dict(mode="category", property_space=None),
             auxiliary_head=dict(mode="category", property_space=None))
