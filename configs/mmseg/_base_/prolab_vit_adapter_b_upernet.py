# The paper's network and schedule (method.md 4b; the release's ViT-Adapter-B configs), shared by the dataset
# configs in configs/mmseg/: the kit's ViT-Adapter-B (DeiT-B/16 initialisation from timm with pretrained="hub",
# or a weights file), UPerNet 512 + FCN 256 auxiliary head (map index 2), the ProLab output over a kit property
# space (T = 0.04, embedding not normalised; COCO-Stuff's config changes both), AdamW 6e-5, weight decay 0.01,
# layer decay 0.95, 1500 linear warm-up iterations from 1e-6, poly decay (power 1) to 0 over 160k iterations,
# fp16 with an initial loss scale of 512 (the configs of Pascal Context, Cityscapes and BDD train in fp32), batch and
# crop per dataset config (prolab.paper.RELEASE_CONFIGS), sliding-window test.
# As the release's heads: the embedding layer drawn from N(0, 0.01) with zero bias (head_init="release"), the bank's
# rows L2-normalised at load (normalize_bank=True), and the auxiliary weight the release effectively uses
# (loss_weight=None: 1.0 for property heads, whose cosine loss ignores the 0.4 of the release's configs; 0.4 for
# category heads, through mmseg's cross-entropy).
_base_ = ["./runtime.py"]

mode = "property"                 # "category": the same network with one-hot supervision (the paper's baseline)
property_space = None             # set by each dataset config: a committed kit space with the paper's K
num_classes = None
iters = 160000
norm_cfg = dict(type="SyncBN", requires_grad=True)   # unused by the kit's blocks (BatchNorm; mmengine converts to SyncBN under DDP)

data_preprocessor = dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(512, 512))
model = dict(
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    backbone=dict(type="ProLabBackbone", name="vit_adapter_base", pretrained="hub"),
    decode_head=dict(type="ProLabUPerHead", in_channels=[768, 768, 768, 768], channels=512, pool_scales=(1, 2, 3, 6),
                     dropout=0.1, num_classes=num_classes, mode=mode, property_space=property_space,
                     temperature=0.04, normalize=False, loss="cos_sigmoid", loss_weight=1.0),
    auxiliary_head=dict(type="ProLabFCNHead", in_channels=768, in_index=2, channels=256, dropout=0.1,
                        num_classes=num_classes, mode=mode, property_space=property_space, temperature=0.04,
                        loss="cos_sigmoid", loss_weight=None),
    train_cfg=dict(),
    test_cfg=dict(mode="slide", crop_size=(512, 512), stride=(341, 341)))

optim_wrapper = dict(type="AmpOptimWrapper", loss_scale=512.0,
                     optimizer=dict(type="AdamW", lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
                     constructor="ProLabOptimWrapperConstructor", paramwise_cfg=dict(layer_decay=0.95))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=1500, end=iters, by_epoch=False),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=16000)
env_cfg = dict(cudnn_benchmark=True)

