"""Segmentation model: timm backbone + UPerNet decode head (+ optional FCN auxiliary head).

Three outputs:
- ``category``: C-way logits (the category-level baseline, trained with cross-entropy);
- ``name_embedding``: a d-dim embedding per pixel regressed onto the sentence embedding of its class's name
  (cosine loss; classes by cosine): the paper's "category space with a text embedder" baseline;
- ``property``: a d-dim embedding e per pixel, optionally L2-normalised, turned into property logits
  z = e . E^T by the frozen property bank E (K x d); activations p = sigmoid(z / T); classes come back by
  cosine similarity between p and the class signatures.

Cost: logits are computed at feature resolution and *then* upsampled. Bilinear upsampling is linear per
channel, so projecting first gives the same logits as the release's upsample-then-project, with K instead of d
channels to upsample.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import defaults
from .backbones import create_backbone
from .layers import BatchNorm2d, conv_bn_relu  # noqa: F401  (BatchNorm2d: imported from here too)
from .supervision import SUPERVISIONS, property_class_scores, property_logits  # noqa: F401  (re-exported)


def init_classifier(conv: nn.Conv2d, head_init: str = defaults.HEAD_INIT) -> nn.Conv2d:
    """Initialise the 1x1 conv that makes the pixel embedding (or the category logits). ``release``: weights
    from N(0, 0.01) and zero bias, mmseg's ``BaseDecodeHead`` init of ``conv_seg``, which the release's heads
    inherit; at step 0 it keeps z/T near unit scale, where PyTorch's default puts most sigmoids in saturation.
    ``pytorch``: ``nn.Conv2d``'s own (kaiming-uniform) init, left as it is."""
    if head_init not in defaults.HEAD_INITS:
        raise ValueError(f"head_init must be one of {', '.join(defaults.HEAD_INITS)}, not {head_init!r}")
    if head_init == "release":
        nn.init.normal_(conv.weight, mean=0.0, std=0.01)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    return conv


def prepare_bank(bank, normalize_bank: bool = defaults.NORMALIZE_BANK) -> torch.Tensor:
    """The frozen (K, d) property bank as the head uses it: float32, rows L2-normalised when ``normalize_bank``
    (the release normalises every row at load, so all properties share the temperature T)."""
    bank = torch.as_tensor(bank, dtype=torch.float32)
    return F.normalize(bank, dim=1) if normalize_bank else bank


class UPerHead(nn.Module):
    """Pyramid pooling on the deepest map + FPN over all maps, fused into one map at 1/4 resolution."""

    def __init__(self, in_channels: list[int], channels: int = 128, pool_scales=(1, 2, 3, 6), dropout: float = 0.1):
        super().__init__()
        self.pool_scales = pool_scales
        self.ppm = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(in_channels[-1], channels, 1))
                                 for s in pool_scales)
        self.bottleneck = conv_bn_relu(in_channels[-1] + len(pool_scales) * channels, channels)
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels[:-1])
        self.fpn = nn.ModuleList(conv_bn_relu(channels, channels) for _ in in_channels[:-1])
        self.fuse = conv_bn_relu(len(in_channels) * channels, channels)
        self.dropout = nn.Dropout2d(dropout)
        self.out_channels = channels

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        top = feats[-1]
        pooled = [F.interpolate(p(top), size=top.shape[2:], mode="bilinear", align_corners=False) for p in self.ppm]
        laterals = [l(f) for l, f in zip(self.lateral, feats[:-1])] + [self.bottleneck(torch.cat([top] + pooled, 1))]
        for i in range(len(laterals) - 1, 0, -1):  # top-down pathway
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                                              mode="bilinear", align_corners=False)
        outs = [fpn(x) for fpn, x in zip(self.fpn, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[2:]
        outs = [outs[0]] + [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs[1:]]
        return self.dropout(self.fuse(torch.cat(outs, 1)))


class FCNHead(nn.Module):
    """The auxiliary head: one 3x3 conv block on an intermediate map."""

    def __init__(self, in_channels: int, channels: int = 64, dropout: float = 0.1):
        super().__init__()
        self.block = conv_bn_relu(in_channels, channels)
        self.dropout = nn.Dropout2d(dropout)
        self.out_channels = channels

    def forward(self, x):
        return self.dropout(self.block(x))


@dataclass(frozen=True)
class ModelDefaults:
    backbone: str = "mobilenetv2_100"
    pretrained: str | None = "offline"   # "offline", a weights file, "hub", or None
    channels: int = 128                   # UPerNet channels (the paper: 512 for base, 1024 for large models)
    aux_channels: int = 64
    aux_index: int = 2                    # which backbone map feeds the auxiliary head
    use_aux: bool = True
    dropout: float = 0.1
    head_init: str = defaults.HEAD_INIT   # init of the embedding layers (classifier, aux_classifier, warm-up)
    normalize_bank: bool = defaults.NORMALIZE_BANK


class SegModel(nn.Module):
    def __init__(self, n_classes: int, mode: str = "property", bank: torch.Tensor | None = None,
                 signatures: torch.Tensor | None = None, temperature: float = 0.04, normalize: bool = False,
                 defaults: ModelDefaults = ModelDefaults(), name_bank: torch.Tensor | None = None,
                 loss: str = "cos_sigmoid"):
        super().__init__()
        if mode not in SUPERVISIONS:
            raise ValueError(f"mode must be one of {', '.join(map(repr, SUPERVISIONS))}, not {mode!r}")
        if mode == "property" and (bank is None or signatures is None):
            raise ValueError("property mode needs the property bank (K x d) and the signatures (C x K)")
        if mode == "name_embedding" and (name_bank is None or tuple(name_bank.shape)[0] != n_classes):
            raise ValueError(f"name_embedding mode needs the class-name embeddings ({n_classes} x d), got "
                             f"{None if name_bank is None else tuple(name_bank.shape)}")
        self.mode, self.n_classes, self.temperature, self.normalize = mode, n_classes, temperature, normalize
        # how classes are recovered: a model trained with the plain `cos` loss never saw sigmoid(z/T), so it is
        # scored as the release scores it, cos(z, y_c); the sigmoid losses score cos(sigmoid(z/T), y_c)
        self.score = "cos" if loss == "cos" else "sigmoid"
        self.defaults = defaults
        self.backbone = create_backbone(defaults.backbone, defaults.pretrained)
        chans = self.backbone.feature_info.channels()
        self.decode = UPerHead(chans, defaults.channels, dropout=defaults.dropout)
        self.aux = FCNHead(chans[defaults.aux_index], defaults.aux_channels, defaults.dropout) if defaults.use_aux else None
        if mode == "property":
            bank = prepare_bank(bank, defaults.normalize_bank)
            sig = torch.as_tensor(signatures, dtype=torch.float32)
            if sig.shape != (n_classes, bank.shape[0]):
                raise ValueError(f"signatures {tuple(sig.shape)} do not fit {n_classes} classes x {bank.shape[0]} properties")
            self.register_buffer("bank", bank)                  # frozen: not a parameter
            self.register_buffer("signatures", sig)
            out_dim = bank.shape[1]
        elif mode == "name_embedding":
            self.register_buffer("name_bank", F.normalize(torch.as_tensor(name_bank, dtype=torch.float32), dim=1))
            out_dim = self.name_bank.shape[1]
        else:
            out_dim = n_classes
        init = defaults.head_init
        self.classifier = init_classifier(nn.Conv2d(defaults.channels, out_dim, 1), init)
        self.aux_classifier = (init_classifier(nn.Conv2d(defaults.aux_channels, out_dim, 1), init)
                               if self.aux is not None else None)
        # one-hot warm-up: a temporary C-way classifier on the same decoder, used before switching to properties
        self.warmup_classifier = (init_classifier(nn.Conv2d(defaults.channels, n_classes, 1), init)
                                  if mode == "property" else None)

    def has_bank(self, bank) -> bool:
        """Whether ``bank`` (a space's raw (K, d) bank) is the one this model holds, as the model prepares it."""
        mine = getattr(self, "bank", None)
        if mine is None:
            return False
        theirs = prepare_bank(bank, self.defaults.normalize_bank)
        return tuple(mine.shape) == tuple(theirs.shape) and torch.allclose(mine.cpu(), theirs, atol=1e-6)

    # -- property logits --------------------------------------------------------------------------------------
    def to_property_logits(self, e: torch.Tensor) -> torch.Tensor:
        """(B, d, h, w) embedding -> (B, K, h, w) logits z = e . E^T (e L2-normalised first if configured)."""
        if self.normalize:
            e = F.normalize(e, dim=1)
        return torch.einsum("bdhw,kd->bkhw", e, self.bank)

    def forward(self, images: torch.Tensor, warmup: bool = False) -> dict[str, torch.Tensor]:
        """Logits at 1/4 of the input resolution: {"logits": (B, K or C, h, w), "aux_logits": ...}.
        ``warmup=True`` (property mode) returns C-way logits of the warm-up classifier instead."""
        feats = self.backbone(images)
        x = self.decode(feats)
        if warmup:
            out = {"logits": self.warmup_classifier(x), "kind": "category"}
        else:   # the supervision's projection: property logits through the bank, the embedding, or class logits
            out = {"logits": SUPERVISIONS[self.mode].project(self, x, self.classifier), "kind": self.mode}
        if self.aux is not None and self.training and not warmup:  # the warm-up trains the main head only
            a = self.aux(feats[self.defaults.aux_index])
            out["aux_logits"] = SUPERVISIONS[out["kind"]].project(self, a, self.aux_classifier)
        return out

    def property_head(self, x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        return property_logits(x, conv, self.bank, self.normalize)

    # -- inference --------------------------------------------------------------------------------------------
    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) class scores. Property mode: cosine between sigmoid(z/T) (z itself for a model trained
        with the plain ``cos`` loss) and each signature;
        name_embedding mode: cosine between the pixel embedding and each class name's embedding; category mode:
        the logits themselves."""
        return SUPERVISIONS[self.mode].class_scores(self, logits)

    @torch.no_grad()
    def predict_scores(self, images: torch.Tensor, size=None, score_resolution: str = "feature",
                       softmax: bool = True) -> torch.Tensor:
        """Softmax class scores at ``size`` (default: the input size); ``softmax=False`` gives the raw scores
        (cosines, or logits in category mode), the scale calibrated stacking shifts.

        ``score_resolution="feature"`` computes class scores where the logits are (1/4 of the input) and
        upsamples the C score maps, as the category baseline upsamples its C logits: the same upsampling cost.
        ``"full"`` scores every pixel from its upsampled K property logits (the release's order); on CPU in one
        fused pass that never builds the (B, K, H, W) map (``segment.fused``), elsewhere by upsampling first."""
        if score_resolution not in ("feature", "full"):
            raise ValueError(f"score_resolution must be 'feature' or 'full', not {score_resolution!r}")
        size = tuple(size or images.shape[2:])
        logits = self.forward(images)["logits"]
        scores = None
        if self.mode != "category" and score_resolution == "feature":
            # contiguous: bilinear upsampling of a channels-last view is slower
            scores = F.interpolate(self._low_resolution_scores(logits).contiguous(), size=size, mode="bilinear",
                                   align_corners=False)
        elif self.mode == "property" and self.score == "sigmoid":
            from .fused import full_resolution_scores

            scores = full_resolution_scores(logits, size, self.signatures, self.temperature)
        if scores is None:
            scores = self.class_scores(F.interpolate(logits, size=size, mode="bilinear", align_corners=False))
        return scores.softmax(1) if softmax else scores

    @torch.no_grad()
    def predict(self, images: torch.Tensor, size=None, score_resolution: str = "feature") -> torch.Tensor:
        """The predicted class map (B, H, W) at ``size`` (default: the input size): the argmax of
        ``predict_scores`` (softmax keeps the order, so it is skipped). At feature resolution on CPU the scores
        are computed over each class's active properties and the argmax is taken while upsampling, in one pass
        that never builds the (B, C, H, W) map (``segment.fused``); category mode uses the same pass on its
        logits."""
        if score_resolution not in ("feature", "full"):
            raise ValueError(f"score_resolution must be 'feature' or 'full', not {score_resolution!r}")
        size = tuple(size or images.shape[2:])
        if score_resolution == "feature":
            from .fused import upsample_argmax

            low = self._low_resolution_scores(self.forward(images)["logits"])
            labels = upsample_argmax(low, size)
            if labels is not None:
                return labels
            return F.interpolate(low.contiguous(), size=size, mode="bilinear", align_corners=False).argmax(1)
        return self.predict_scores(images, size, score_resolution, softmax=False).argmax(1)

    def _low_resolution_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """``class_scores`` at the logits' resolution for inference: the fused sparse kernel where it runs."""
        if self.mode == "property" and self.score == "sigmoid":
            from .fused import low_resolution_scores

            fast = low_resolution_scores(logits, self.signatures, self.temperature)
            if fast is not None:
                return fast
        return self.class_scores(logits)
