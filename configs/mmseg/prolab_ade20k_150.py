# ProLab on ADE20K (150 classes) through mmsegmentation 1.x: the paper's setting (configs/mmseg/_base_/), K = 256
# properties from the committed kit space, crop 512, sliding-window test (crop 512, stride 341).
# The paper: 49.0 mIoU (ProLab) vs 48.4 (category-level), ViT-Adapter-B, 160k iterations, 8 GPUs.
# Data: mmseg's layout under data/ade/ADEChallengeData2016 (mmseg's dataset config). The space uses the kit's MiniLM embeddings;
# a BGE space (the paper's embedder) is one `prolab properties` call away (docs/howto/mmseg.md).
#   torchrun --nproc_per_node 8 -m prolab.interop.mmseg.train configs/mmseg/prolab_ade20k_150.py --launcher pytorch
_base_ = ["mmseg::_base_/datasets/ade20k.py", "./_base_/prolab_vit_adapter_b_upernet.py"]

mode = "property"
property_space = "properties/ade20k_150/qwen2.5-coder-1.5b-instruct-q4_k_m__structured-d247051e__all-minilm-l6-v2__st__kmeans-s0-k256.safetensors"
num_classes = 150
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size),
             decode_head=dict(num_classes=num_classes, mode=mode, property_space=property_space),
             auxiliary_head=dict(num_classes=num_classes, mode=mode, property_space=property_space),
             test_cfg=dict(mode="slide", crop_size=crop_size, stride=(341, 341)))
train_dataloader = dict(batch_size=2, num_workers=4)   # 2 per GPU x 8 GPUs
