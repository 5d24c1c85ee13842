# ProLab on BDD100K (19 classes) through mmsegmentation 1.x: the paper's setting (configs/mmseg/_base_/), K = 32
# properties from the committed kit space, crop 768, sliding-window test (crop 768, stride 512).
# The paper: 65.7 mIoU (ProLab) vs 60.7 (category-level), ViT-Adapter-B, 160k iterations, 8 GPUs.
# Data: mmseg's layout under data/bdd100k/ (mmseg's dataset config). The space uses the kit's MiniLM embeddings;
# a BGE space (the paper's embedder) is one `prolab properties` call away (docs/howto/mmseg.md).
#   torchrun --nproc_per_node 8 -m prolab.interop.mmseg.train configs/mmseg/prolab_bdd100k_19.py --launcher pytorch
_base_ = ["mmseg::_base_/datasets/bdd100k.py", "./_base_/prolab_vit_adapter_b_upernet.py"]

mode = "property"
property_space = "properties/bdd100k_19/qwen2.5-coder-1.5b-instruct-q4_k_m__structured-d247051e__all-minilm-l6-v2__st__kmeans-s0-k32.safetensors"
num_classes = 19
crop_size = (768, 768)
model = dict(data_preprocessor=dict(size=crop_size),
             decode_head=dict(num_classes=num_classes, mode=mode, property_space=property_space),
             auxiliary_head=dict(num_classes=num_classes, mode=mode, property_space=property_space),
             test_cfg=dict(mode="slide", crop_size=crop_size, stride=(512, 512)))

# the paper's 768 crop (mmseg's base config crops 512x1024): the training pipeline with that crop
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(batch_size=1, num_workers=4, dataset=dict(pipeline=train_pipeline))  # 1 per GPU x 8, as the release

# fp32, as the release's config (no fp16): a plain OptimWrapper replaces the base's AmpOptimWrapper
optim_wrapper = dict(_delete_=True, type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
                     constructor="ProLabOptimWrapperConstructor", paramwise_cfg=dict(layer_decay=0.95))
