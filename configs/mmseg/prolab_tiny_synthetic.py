# ProLab through mmsegmentation 1.x on the kit's embedded default: MobileNetV2 (offline ImageNet weights) +
# UPerNet 64 + the ProLab head over the committed K=24 property space, 128 px crops, batch 8; about a minute
# on 2 CPU cores for the 60 iterations of the kit's demo preset.
#   .venv/bin/python -m prolab.interop.mmseg.train configs/mmseg/prolab_tiny_synthetic.py --work-dir results/_scratch/mm
_base_ = ["./_base_/runtime.py"]

property_space = ("properties/synthetic_outdoor/qwen2.5-coder-1.5b-instruct-q4_k_m__structured-d247051e__"
                  "all-minilm-l6-v2__st__kmeans-s0-k24.safetensors")
num_classes = 18
crop_size = (128, 128)
iters = 60

data_preprocessor = dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=crop_size)
model = dict(
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    backbone=dict(type="ProLabBackbone", name="mobilenetv2_100", pretrained="offline"),
    decode_head=dict(type="ProLabUPerHead", in_channels=[24, 32, 96, 320], channels=64, num_classes=num_classes,
                     mode="property", property_space=property_space, temperature=0.04, loss="cos_sigmoid"),
    auxiliary_head=dict(type="ProLabFCNHead", in_channels=96, in_index=2, channels=32, num_classes=num_classes,
                        mode="property", property_space=property_space, temperature=0.04),  # weight: the release's 1.0
    train_cfg=dict(),
    test_cfg=dict(mode="whole"))

train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=False),
    dict(type="RandomResize", scale=(256, 128), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(256, 128), keep_ratio=True),
    dict(type="LoadAnnotations", reduce_zero_label=False),
    dict(type="PackSegInputs"),
]
dataset = dict(type="ProLabSyntheticDataset")    # data_root: the kit renders it on first use
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        sampler=dict(type="InfiniteSampler", shuffle=True),
                        dataset=dict(**dataset, data_prefix=dict(img_path="img_dir/train", seg_map_path="ann_dir/train"),
                                     pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(**dataset, data_prefix=dict(img_path="img_dir/val", seg_map_path="ann_dir/val"),
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator

# the kit's demo preset: AdamW 1e-3, weight decay 0.01 (none on norms and biases), 10 warm-up iterations,
# then poly decay (power 1.0) to 0
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
                     constructor="ProLabOptimWrapperConstructor", paramwise_cfg=dict(layer_decay=1.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=10),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=10, end=iters, by_epoch=False),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=20, max_keep_ckpts=2))
