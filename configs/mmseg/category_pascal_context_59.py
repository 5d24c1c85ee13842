# The category-level twin of prolab_pascal_context_59.py: the same network, data and schedule with one-hot
# cross-entropy supervision (the paper's baseline, 53.3 mIoU on Pascal Context-59).
#   torchrun --nproc_per_node 8 -m prolab.interop.mmseg.train configs/mmseg/category_pascal_context_59.py --launcher pytorch
_base_ = ["./prolab_pascal_context_59.py"]

model = dict(decode_head=dict(mode="category", property_space=None),
             auxiliary_head=dict(mode="category", property_space=None))
