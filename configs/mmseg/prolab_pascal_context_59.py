# ProLab on Pascal Context-59 through mmsegmentation 1.x: the paper's setting (configs/mmseg/_base_/), K = 128
# properties from the committed kit space, crop 512, train resize (2048, 512), sliding-window test (crop 512,
# stride 341), fp32: the release's config (mmseg's dataset config crops 480 from a 520 resize).
# The paper: 58.2 mIoU (ProLab) vs 53.3 (category-level), ViT-Adapter-B, 160k iterations, 8 GPUs.
# Data: mmseg's layout under data/VOCdevkit/VOC2010/ (mmseg's dataset config). The space uses the kit's MiniLM embeddings;
# a BGE space (the paper's embedder) is one `prolab properties` call away (docs/howto/mmseg.md).
#   torchrun --nproc_per_node 8 -m prolab.interop.mmseg.train configs/mmseg/prolab_pascal_context_59.py --launcher pytorch
_base_ = ["mmseg::_base_/datasets/pascal_context_59.py", "./_base_/prolab_vit_adapter_b_upernet.py"]

mode = "property"
property_space = "properties/pascal_context_59/qwen2.5-coder-1.5b-instruct-q4_k_m__structured-d247051e__all-minilm-l6-v2__st__kmeans-s0-k128.safetensors"
num_classes = 59
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size),
             decode_head=dict(num_classes=num_classes, mode=mode, property_space=property_space),
             auxiliary_head=dict(num_classes=num_classes, mode=mode, property_space=property_space),
             test_cfg=dict(mode="slide", crop_size=crop_size, stride=(341, 341)))
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="RandomResize", scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2048, 512), keep_ratio=True),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(batch_size=2, num_workers=4, dataset=dict(pipeline=train_pipeline))  # 2 per GPU x 8 GPUs
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# fp32, as the release's config (no fp16): a plain OptimWrapper replaces the base's AmpOptimWrapper
optim_wrapper = dict(_delete_=True, type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
                     constructor="ProLabOptimWrapperConstructor", paramwise_cfg=dict(layer_decay=0.95))
