# The category-level twin of prolab_coco_stuff_171.py: the same network, data and schedule with one-hot
# cross-entropy supervision (the paper's baseline, 43.1 mIoU on COCO-Stuff-164k).
#   torchrun --nproc_per_node 8 -m prolab.interop.mmseg.train configs/mmseg/category_coco_stuff_171.py --launcher pytorch
_base_ = ["./prolab_coco_stuff_171.py"]

model = dict(decode_head=dict(mode="category", property_space=None),
             auxiliary_head=dict(mode="category", property_space=None))
