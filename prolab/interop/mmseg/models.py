"""ProLab's parts as mmsegmentation 1.x modules. One implementation, two front ends: the backbones are the kit's
(``segment.backbones``: any timm model or ViT-Adapter-B), the heads wrap the kit's UPerNet / FCN blocks, the
property projection (``segment.supervision.property_logits``), the losses (``segment.supervision.segmentation_loss``,
fused on CPU) and class recovery (``segment.model.property_class_scores``). Parameter names follow the kit's
SegModel under ``backbone.body``, ``decode_head`` and ``auxiliary_head`` (``prolab.interop.mmseg.convert`` maps them).

The decode head returns property logits at 1/4 resolution; ``predict_by_feat`` turns them into C class scores
(cosine to each signature) before mmseg resizes them, so ``EncoderDecoder`` takes the argmax and ``IoUMetric``
works unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

from ... import paths
from ...segment.backbones import create_backbone
from ...segment.supervision import segmentation_loss
from ... import defaults
from ...segment.model import (FCNHead, UPerHead, init_classifier, prepare_bank, property_class_scores,
                             property_logits)

MODES = ("property", "category")


@MODELS.register_module()
class ProLabBackbone(BaseModule):
    """The kit's backbone factory: a timm model name (its four feature levels) or ``vit_adapter_base``.
    ``pretrained``: "offline" (packaged ImageNet MobileNetV2), "hub", a weights file, or None."""

    def __init__(self, name: str = "mobilenetv2_100", pretrained: str | None = "offline", init_cfg=None):
        super().__init__(init_cfg)
        self.body = create_backbone(name, pretrained)
        self.channels = list(self.body.feature_info.channels())

    def forward(self, x):
        return tuple(self.body(x))

    def init_weights(self):
        """The weights come from ``create_backbone`` (pretrained or timm's init); nothing is re-initialised."""


def load_space(property_space: str, num_classes: int):
    from ...properties import PropertySpace

    if not property_space:
        raise ValueError("a ProLab property head needs property_space: the .safetensors file of a kit "
                         "PropertySpace (`prolab properties` or notebook 03 writes one)")
    space = PropertySpace.load(paths.resolve(property_space))
    if space.n_classes != num_classes:
        raise ValueError(f"property_space {property_space}: {space.n_classes} classes, but num_classes = "
                         f"{num_classes}")
    return space


class _ProLabHead(BaseDecodeHead):
    """Shared part of the two heads: the output projection, the loss and class recovery."""

    def __init__(self, block: nn.Module, num_classes: int, mode: str, property_space: str | None,
                 temperature: float, normalize: bool, loss: str, loss_weight: float, loss_name: str,
                 head_init: str = defaults.HEAD_INIT, normalize_bank: bool = defaults.NORMALIZE_BANK, **kwargs):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if head_init not in defaults.HEAD_INITS:
            raise ValueError(f"head_init must be one of {', '.join(defaults.HEAD_INITS)}, not {head_init!r}")
        super().__init__(num_classes=num_classes, dropout_ratio=0.0, align_corners=False, init_cfg=None,
                         loss_decode=dict(type="CrossEntropyLoss", loss_weight=loss_weight, avg_non_ignore=True),
                         **kwargs)   # loss_decode: unused (loss_by_feat is the kit's), required by the base
        del self.conv_seg, self.dropout           # the kit's block has its dropout; the projection is ours
        self.block = block
        self.mode, self.temperature, self.normalize = mode, float(temperature), bool(normalize)
        self.loss_kind, self.loss_weight, self.loss_name = loss, float(loss_weight), loss_name
        self.onehot_warmup = False                # set by ProLabOneHotWarmupHook
        self.head_init = head_init
        self.score = "cos" if loss == "cos" else "sigmoid"   # as SegModel: a `cos`-trained head scores cos(z, y_c)
        if mode == "property":
            space = load_space(property_space, num_classes)
            # the release normalises the bank's rows at load (normalize_bank)
            self.register_buffer("bank", prepare_bank(space.bank, normalize_bank))
            self.register_buffer("signatures", torch.as_tensor(space.signatures, dtype=torch.float32))
            self.property_names = list(space.property_names)
            self.space_classes = list(space.class_names)   # checked against the dataset's by ProLabClassCheckHook
            out_dim = self.bank.shape[1]
        else:
            self.signatures, self.space_classes = None, None
            out_dim = num_classes
        # mmseg's conv_seg init, N(0, 0.01) and zero bias, made here because the kit's layer replaces conv_seg
        self.classifier = init_classifier(nn.Conv2d(block.out_channels, out_dim, 1), head_init)

    def project(self, x):
        if self.mode == "property":
            return property_logits(x, self.classifier, self.bank, self.normalize)
        return self.classifier(x)

    def class_scores(self, logits):
        if self.mode == "property":
            return property_class_scores(logits, self.signatures, self.temperature, self.score)
        return logits

    def loss_by_feat(self, seg_logits, batch_data_samples) -> dict:
        labels = self._stack_batch_gt(batch_data_samples).squeeze(1).long()
        kind = "category" if self.mode == "category" or self.onehot_warmup else "property"
        loss = segmentation_loss({"kind": kind, "logits": seg_logits}, labels, getattr(self, "signatures", None),
                                 self.temperature, self.loss_kind, aux_weight=0.0, ignore_index=self.ignore_index)
        return {self.loss_name: self.loss_weight * loss}

    def predict_by_feat(self, seg_logits, batch_img_metas):
        return super().predict_by_feat(self.class_scores(seg_logits), batch_img_metas)


@MODELS.register_module()
class ProLabUPerHead(_ProLabHead):
    """UPerNet (pyramid pooling + FPN at 1/4 resolution) with ProLab's output: a d-dim pixel embedding against
    the frozen property bank of ``property_space`` (mode "property"), or C-way logits (mode "category", the
    baseline). A one-hot warm-up classifier is kept for ``ProLabOneHotWarmupHook``."""

    def __init__(self, in_channels, channels: int, num_classes: int, mode: str = "property",
                 property_space: str | None = None, temperature: float = 0.04, normalize: bool = False,
                 loss: str = "cos_sigmoid", loss_weight: float = 1.0, dropout: float = 0.1,
                 pool_scales=(1, 2, 3, 6), **kwargs):
        in_channels = list(in_channels)
        super().__init__(UPerHead(in_channels, channels, tuple(pool_scales), dropout), num_classes, mode,
                         property_space, temperature, normalize, loss, loss_weight, "loss_prolab",
                         in_channels=in_channels, channels=channels, in_index=list(range(len(in_channels))),
                         input_transform="multiple_select", **kwargs)
        self.warmup_classifier = (init_classifier(nn.Conv2d(channels, num_classes, 1), self.head_init)
                                  if mode == "property" else None)

    def forward(self, inputs):
        x = self.block(list(self._transform_inputs(inputs)))
        if self.onehot_warmup and self.warmup_classifier is not None:
            return self.warmup_classifier(x)
        return self.project(x)


@MODELS.register_module()
class ProLabFCNHead(_ProLabHead):
    """The auxiliary head: one 3x3 conv block on the ``in_index`` feature map, the same output and loss as the
    decode head, weighted by ``loss_weight``; None (the default) is the release's effective weight,
    ``defaults.aux_weight_for(mode)``: 1.0 for property heads (the release's configs say 0.4, but its cosine loss
    never applies loss_weight), 0.4 for category heads (mmseg's cross-entropy applies it). Off during the one-hot
    warm-up, as in the kit."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, in_index: int = 2,
                 mode: str = "property", property_space: str | None = None, temperature: float = 0.04,
                 normalize: bool = False, loss: str = "cos_sigmoid", loss_weight: float | None = None,
                 dropout: float = 0.1, **kwargs):
        if loss_weight is None:
            loss_weight = defaults.aux_weight_for(mode)
        super().__init__(FCNHead(in_channels, channels, dropout), num_classes, mode, property_space, temperature,
                         normalize, loss, loss_weight, "loss_prolab", in_channels=in_channels, channels=channels,
                         in_index=in_index, **kwargs)

    def forward(self, inputs):
        return self.project(self.block(self._transform_inputs(inputs)))

    def loss_by_feat(self, seg_logits, batch_data_samples) -> dict:
        if self.onehot_warmup:                    # the kit's warm-up trains the main head only
            return {self.loss_name: seg_logits.sum() * 0.0}
        return super().loss_by_feat(seg_logits, batch_data_samples)
